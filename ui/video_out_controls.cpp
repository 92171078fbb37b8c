#include "video_out_controls.h"

#include <QInputDialog>
#include <QMenu>
#include <QSettings>
#include <QSignalBlocker>

#include "longlive/log.h"

namespace longlive::ui {

VideoOutSettings VideoOutSettings::load() {
  QSettings s("LongLive", "Studio");
  VideoOutSettings v;
  v.camera_device = s.value("out/camera_device", v.camera_device).toString();
  v.stream_url = s.value("out/stream_url", v.stream_url).toString();
  v.stream_kbps = std::clamp(s.value("out/stream_kbps", v.stream_kbps).toInt(), 100, 100000);
  return v;
}

void VideoOutSettings::save() const {
  QSettings s("LongLive", "Studio");
  s.setValue("out/camera_device", camera_device);
  s.setValue("out/stream_url", stream_url);
  s.setValue("out/stream_kbps", stream_kbps);
}

VideoOutControls::VideoOutControls(QWidget* window, QMenu* menu)
    : QObject(window),
      window_(window),
      settings_(VideoOutSettings::load()),
      outputs_(std::make_unique<LiveOutputs>()) {
  camera_ = menu->addAction("Virtual camera (v4l2loopback)");
  camera_->setCheckable(true);
  camera_->setToolTip("Other apps see the video as a camera (OBS, Zoom, a browser)");
  connect(camera_, &QAction::toggled, this, [this](bool on) { set_camera(on); });
  stream_ = menu->addAction("Stream (RTMP / SRT)");
  stream_->setCheckable(true);
  connect(stream_, &QAction::toggled, this, [this](bool on) { set_stream(on); });
  menu->addSeparator();
  menu->addAction("Output settings…", this, &VideoOutControls::edit_settings);

  status_ = new QLabel;
  status_->hide();
  poll_.setInterval(500);
  connect(&poll_, &QTimer::timeout, this, &VideoOutControls::refresh_status);
}

VideoOutControls::~VideoOutControls() = default;  // LiveOutputs closes and joins

void VideoOutControls::on_engine_frame(const EngineFrame& frame) {
  // Frames without a host copy come before the window turns the engine's copies on for an
  // output (at its next stats): nothing to send yet.
  if (frame.rgba.defined()) outputs_->push(frame.rgba);
}

void VideoOutControls::set_settings(const VideoOutSettings& settings) {
  settings_ = settings;
  settings_.save();
}

void VideoOutControls::set_camera(bool on, const QString& device) {
  if (!device.isEmpty()) set_settings({device, settings_.stream_url, settings_.stream_kbps});
  {
    const QSignalBlocker block(camera_);
    camera_->setChecked(on);
  }
  shown_camera_error_.reset();
  if (on) {
    VirtualCameraOptions o;
    o.device = settings_.camera_device.toStdString();
    outputs_->enable_virtual_camera(o);
    log::info("virtual camera {} from the next frame", o.device);
  } else {
    outputs_->disable(LiveOutputs::Kind::virtual_camera);
  }
  refresh_status();
}

void VideoOutControls::set_stream(bool on, const QString& url) {
  if (!url.isEmpty()) set_settings({settings_.camera_device, url, settings_.stream_kbps});
  if (on && settings_.stream_url.isEmpty()) {
    edit_settings();  // where to? asked once, then remembered
    if (settings_.stream_url.isEmpty()) on = false;
  }
  {
    const QSignalBlocker block(stream_);
    stream_->setChecked(on);
  }
  shown_stream_error_.reset();
  if (on) {
    StreamOutputOptions o;
    o.url = settings_.stream_url.toStdString();
    o.bitrate_kbps = settings_.stream_kbps;
    outputs_->enable_stream(o);
    log::info("streaming to {} ({} kbit/s) from the next frame", o.url, o.bitrate_kbps);
  } else {
    outputs_->disable(LiveOutputs::Kind::stream);
  }
  refresh_status();
}

void VideoOutControls::apply(const ControlCommand& c) {
  const QString target = QString::fromStdString(c.file);
  if (c.kind == ControlCommand::Kind::camera_out) set_camera(c.on, target);
  if (c.kind == ControlCommand::Kind::stream_out) {
    if (c.on && target.isEmpty() && settings_.stream_url.isEmpty()) {
      log::warn("remote {}: no stream URL set (Output settings, or send one)", describe(c));
      return;  // no dialog for a remote command
    }
    set_stream(c.on, target);
  }
}

void VideoOutControls::edit_settings() {
  bool ok = false;
  const QString url = QInputDialog::getText(
      window_, "Stream",
      "Stream URL (rtmp://host/app/key, srt://host:port, udp://host:port):", QLineEdit::Normal,
      settings_.stream_url, &ok);
  if (!ok) return;
  const int kbps = QInputDialog::getInt(
      window_, "Stream", "Bitrate (kbit/s):", settings_.stream_kbps, 100, 100000, 500, &ok);
  if (!ok) return;
  const QString device =
      QInputDialog::getText(window_, "Virtual camera", "v4l2loopback device:", QLineEdit::Normal,
                            settings_.camera_device, &ok);
  if (!ok) return;
  set_settings({device.trimmed(), url.trimmed(), kbps});
}

void VideoOutControls::refresh_status() {
  const std::string text = outputs_->summary();
  status_->setText(QString::fromStdString(text).prepend(text.empty() ? "" : "out: "));
  status_->setVisible(!text.empty());
  if (text.empty())
    poll_.stop();
  else if (!poll_.isActive())
    poll_.start();
  auto report = [this](LiveOutputs::Kind kind, std::optional<std::string>& shown) {
    const LiveOutputs::Status s = outputs_->status(kind);
    if (!s.error || s.error == shown) return;
    shown = s.error;
    // Off, so that switching it on again is the retry.
    QAction* action = kind == LiveOutputs::Kind::stream ? stream_ : camera_;
    const QSignalBlocker block(action);
    action->setChecked(false);
    emit error(QString("Video out (%1) stopped: %2")
                   .arg(QString::fromStdString(to_string(kind)), QString::fromStdString(*s.error)));
  };
  report(LiveOutputs::Kind::virtual_camera, shown_camera_error_);
  report(LiveOutputs::Kind::stream, shown_stream_error_);
}

}  // namespace longlive::ui
