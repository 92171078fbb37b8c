#include "recording_controls.h"

#include <algorithm>

#include <QApplication>
#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QKeySequence>
#include <QSettings>
#include <QShortcut>
#include <QStandardPaths>

#include "export_dialog.h"

namespace longlive::ui {
namespace {

// Frames kept in memory for export (RGBA8): 2 GiB is ~20 minutes of 64x64 or ~80 s of 480x832.
constexpr int64_t kDefaultSessionBudgetMiB = 2048;

QString human_size(int64_t bytes) {
  if (bytes < 1024 * 1024) return QString("%1 KB").arg(bytes / 1024.0, 0, 'f', 0);
  return QString("%1 MB").arg(bytes / (1024.0 * 1024.0), 0, 'f', 1);
}

}  // namespace

EncoderSettings EncoderSettings::load() {
  QSettings s("LongLive", "Studio");
  EncoderSettings e;
  const QString movies = QStandardPaths::writableLocation(QStandardPaths::MoviesLocation);
  e.folder = s.value("recording/folder",
                     QDir(movies.isEmpty() ? QDir::homePath() : movies).filePath("LongLive"))
                 .toString();
  e.codec = s.value("recording/codec", e.codec).toString();
  e.crf = s.value("recording/crf", e.crf).toInt();
  e.threads = std::max(0, s.value("recording/threads", e.threads).toInt());
  return e;
}

void EncoderSettings::save() const {
  QSettings s("LongLive", "Studio");
  s.setValue("recording/folder", folder);
  s.setValue("recording/codec", codec);
  s.setValue("recording/crf", crf);
  s.setValue("recording/threads", threads);
}

QStringList EncoderSettings::codecs() {
  return {"auto", "libx264", "libx265", "h264_nvenc", "hevc_nvenc"};
}

RecordingControls::RecordingControls(QWidget* window, std::function<SessionInfo()> session_info)
    : QObject(window),
      window_(window),
      session_info_(std::move(session_info)),
      settings_(EncoderSettings::load()),
      session_(QSettings("LongLive", "Studio")
                   .value("recording/session_memory_mib", qlonglong{kDefaultSessionBudgetMiB})
                   .toLongLong() *
               1024 * 1024) {
  record_ = new QPushButton("● Record");
  record_->setCheckable(true);
  record_->setToolTip("Record the live video to MP4 (Ctrl+R). Folder, codec and quality: Export…");
  record_->setStyleSheet("QPushButton:checked { background:#b01818; color:white; }");
  export_ = new QPushButton("Export…");
  export_->setToolTip("Write this session's frames to an MP4 and choose codec and quality");
  status_ = new QLabel;
  status_->setStyleSheet("color:#d01010; font-weight:bold");
  status_->hide();
  // clicked (not toggled): the button's state follows the recorder, not the other way round.
  connect(record_, &QPushButton::clicked, this, [this] { toggle(); });
  connect(export_, &QPushButton::clicked, this, &RecordingControls::open_export_dialog);
  // A window shortcut rather than the button's own (which clicks 100 ms later, animated).
  auto* shortcut = new QShortcut(QKeySequence(Qt::CTRL | Qt::Key_R), window);
  connect(shortcut, &QShortcut::activated, this, &RecordingControls::toggle);
  poll_.setInterval(250);
  connect(&poll_, &QTimer::timeout, this, &RecordingControls::refresh_status);
}

RecordingControls::~RecordingControls() = default;

void RecordingControls::set_settings(const EncoderSettings& settings) {
  settings_ = settings;
  settings_.save();
}

void RecordingControls::on_engine_frame(const EngineFrame& frame) {
  session_.add(frame);
  live_.on_frame(frame);
}

void RecordingControls::new_session() { session_.clear(); }

SessionLatents RecordingControls::session_latents() const {
  SessionLatents latents = latents_source_ ? latents_source_() : SessionLatents{};
  if (!latents.empty()) latents.prompts = session_.video_prompts();
  return latents;
}

void RecordingControls::toggle() { live_.active() ? stop() : start(); }

void RecordingControls::start() {
  const SessionInfo info = session_info_();
  const QString name =
      QString("longlive-%1.mp4").arg(QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss"));
  RecorderOptions o;
  o.path = QDir(settings_.folder).filePath(name).toStdString();
  o.width = info.width;
  o.height = info.height;
  o.codec = settings_.codec.toStdString();
  o.crf = settings_.crf;
  o.encoder_threads = settings_.threads > 0 ? settings_.threads : live_encoder_threads();
  o.model = info.model.toStdString();
  o.preset = info.preset.toStdString();
  o.seed = info.seed;
  if (!QFileInfo(settings_.folder).exists()) QDir().mkpath(settings_.folder);
  QPointer<RecordingControls> self(this);
  try {
    live_.start(o, [self](const std::optional<std::string>& failure) {
      // Opener thread: hop back to the UI thread.
      QMetaObject::invokeMethod(
          qApp,
          [self, failure] {
            if (!self) return;
            if (failure) {
              self->poll_.stop();
              self->record_->setChecked(false);
              self->status_->hide();
              emit self->error(
                  QString("Recording could not start: %1").arg(QString::fromStdString(*failure)));
              emit self->recording_failed_to_start();
              return;
            }
            self->started_ms_ = QDateTime::currentMSecsSinceEpoch();
            self->refresh_status();
            emit self->recording_started();
          },
          Qt::QueuedConnection);
    });
  } catch (const std::exception& e) {
    record_->setChecked(false);
    emit error(QString("Recording could not start: %1").arg(e.what()));
    return;
  }
  record_->setChecked(true);
  status_->setText("● REC starting…");
  status_->show();
  poll_.start();
}

void RecordingControls::stop() {
  poll_.stop();
  record_->setChecked(false);
  status_->setText("finishing…");
  QPointer<RecordingControls> self(this);
  live_.stop([self](const LiveRecorder::Outcome& outcome) {
    // Helper thread: hop back to the UI thread.
    QMetaObject::invokeMethod(
        qApp,
        [self, outcome] {
          if (!self) return;
          const QString path = QString::fromStdString(outcome.path.string());
          const QString err = outcome.error ? QString::fromStdString(*outcome.error) : QString();
          if (!self->live_.active()) {
            if (!err.isEmpty())
              self->status_->setText("recording failed");
            else if (outcome.removed)
              self->status_->setText("nothing recorded (no frames yet)");
            else
              self->status_->setText(QString("saved %1 (%2 frames)")
                                         .arg(QFileInfo(path).fileName())
                                         .arg(outcome.frames));
          }
          if (!err.isEmpty()) emit self->error(err);
          emit self->recording_finished(path, outcome.frames, err);
        },
        Qt::QueuedConnection);
  });
}

void RecordingControls::refresh_status() {
  if (!live_.active() || live_.opening()) return;
  if (const auto err = live_.error()) {
    stop();  // keeps what was written; the banner says why
    return;
  }
  const qint64 s = (QDateTime::currentMSecsSinceEpoch() - started_ms_) / 1000;
  const RecorderProgress p = live_.progress();
  status_->setText(QString("● REC %1:%2  %3  %4 frames")
                       .arg(s / 60, 2, 10, QChar('0'))
                       .arg(s % 60, 2, 10, QChar('0'))
                       .arg(human_size(p.bytes_written))
                       .arg(live_.frames_pushed()));
}

ExportDialog* RecordingControls::export_dialog() const { return dialog_.data(); }

void RecordingControls::open_export_dialog() {
  if (!dialog_) {
    dialog_ = new ExportDialog(this, window_);
    // The dialog shows a failure too, but the banner is where the window reports errors.
    connect(dialog_, &ExportDialog::export_finished, this,
            [this](const QString&, qint64, const QString& failure, bool) {
              if (!failure.isEmpty()) emit error(QString("Export failed: %1").arg(failure));
            });
  }
  dialog_->prepare();
  dialog_->show();
  dialog_->raise();
}

}  // namespace longlive::ui
