#pragma once
// Video out in the studio: the Output menu's "Virtual camera" and "Stream" switches, the settings
// they use (v4l2loopback device, stream URL and bitrate, in QSettings out/*) and a status-bar
// label with what each output sent and dropped. Frames come from the engine's thread
// (on_engine_frame); opening, encoding and closing happen off it (LiveOutputs), so an output
// never slows generation. OSC's /longlive/out/* reach apply().
#include <QAction>
#include <QLabel>
#include <QObject>
#include <QTimer>
#include <memory>
#include <optional>

#include "longlive/control.h"
#include "longlive/engine.h"
#include "longlive/video_out.h"

class QMenu;
class QWidget;

namespace longlive::ui {

struct VideoOutSettings {
  QString camera_device = "/dev/video10";
  QString stream_url;  // empty: asked for when the stream is switched on
  int stream_kbps = 4000;

  static VideoOutSettings load();
  void save() const;
};

class VideoOutControls : public QObject {
  Q_OBJECT
 public:
  // Puts its switches and the settings dialog into `menu` (the window's Output menu).
  VideoOutControls(QWidget* window, QMenu* menu);
  ~VideoOutControls() override;

  QAction* camera_action() const { return camera_; }
  QAction* stream_action() const { return stream_; }
  QLabel* status_label() const { return status_; }
  const LiveOutputs& outputs() const { return *outputs_; }
  LiveOutputs& outputs() { return *outputs_; }

  void on_engine_frame(const EngineFrame& frame);  // engine thread, never blocks
  // Switches an output on (with `target` when given, else the saved device/URL) or off.
  void set_camera(bool on, const QString& device = {});
  void set_stream(bool on, const QString& url = {});
  void apply(const ControlCommand& command);  // stream_out / camera_out
  VideoOutSettings settings() const { return settings_; }
  void set_settings(const VideoOutSettings& settings);

 signals:
  void error(const QString& message);  // an output failed to open or while sending

 private:
  void refresh_status();
  void edit_settings();

  QWidget* window_;
  VideoOutSettings settings_;
  std::unique_ptr<LiveOutputs> outputs_;
  QAction* camera_ = nullptr;
  QAction* stream_ = nullptr;
  QLabel* status_ = nullptr;
  QTimer poll_;
  // The errors already shown, so each failure raises the banner once.
  std::optional<std::string> shown_camera_error_, shown_stream_error_;
};

}  // namespace longlive::ui
