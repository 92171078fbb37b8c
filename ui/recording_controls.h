#pragma once
// Recording in the studio: the Record toggle (Ctrl+R) with its red-dot status (elapsed time, file
// size), the Export… button and the settings both use (folder, codec, quality in QSettings).
// Frames come in on the engine thread through on_engine_frame(); the recorder pushes them in
// order with back-pressure, so a recording never loses a frame. Finishing a file runs on a
// helper thread: the UI thread never waits for the encoder.
#include <QLabel>
#include <QObject>
#include <QPointer>
#include <QPushButton>
#include <QTimer>
#include <functional>

#include "live_recording.h"
#include "wan_export.h"

namespace longlive::ui {

class ExportDialog;

// What the file's metadata says about the session; asked for when a recording starts.
struct SessionInfo {
  QString model;
  QString preset;
  uint64_t seed = 0;
  int height = 0;
  int width = 0;
};

// Encoder settings shared by live recording and export (persisted in QSettings).
struct EncoderSettings {
  QString folder;          // where live recordings go
  QString codec = "auto";  // auto, libx264, libx265, h264_nvenc, hevc_nvenc
  int crf = 18;            // quality: lower is better, 18 is visually lossless-ish
  int threads = 0;         // the software encoder's threads; 0: live_encoder_threads()

  static EncoderSettings load();
  void save() const;
  static QStringList codecs();
};

class RecordingControls : public QObject {
  Q_OBJECT
 public:
  RecordingControls(QWidget* window, std::function<SessionInfo()> session_info);
  ~RecordingControls() override;

  QPushButton* record_button() const { return record_; }
  QPushButton* export_button() const { return export_; }
  QLabel* status_label() const { return status_; }

  void on_engine_frame(const EngineFrame& frame);  // engine thread
  void new_session();                              // UI thread: a new video starts
  void toggle();                                   // Record button / Ctrl+R
  void open_export_dialog();
  bool recording() const { return live_.active(); }

  SessionInfo session_info() const { return session_info_(); }
  EncoderSettings settings() const { return settings_; }
  void set_settings(const EncoderSettings& settings);
  const LiveRecorder& live() const { return live_; }
  const SessionFrames& session() const { return session_; }
  // Where the current video's latents come from (the engine), for the Wan VAE re-decode.
  void set_latents_source(std::function<SessionLatents()> source) {
    latents_source_ = std::move(source);
  }
  // The current video's latents with its prompt marks; empty before the first block.
  SessionLatents session_latents() const;
  ExportDialog* export_dialog() const;

 signals:
  void error(const QString& message);
  void recording_started();          // the file is open, frames are being recorded
  void recording_failed_to_start();  // after error()
  // A recording was finalised (error empty) or stopped by a failure (error set).
  void recording_finished(const QString& path, qint64 frames, const QString& error);

 private:
  void start();
  void stop();
  void refresh_status();

  QWidget* window_;
  std::function<SessionInfo()> session_info_;
  std::function<SessionLatents()> latents_source_;
  QPushButton* record_;
  QPushButton* export_;
  QLabel* status_;
  QTimer poll_;
  qint64 started_ms_ = 0;
  EncoderSettings settings_;
  LiveRecorder live_;
  SessionFrames session_;
  QPointer<ExportDialog> dialog_;
};

}  // namespace longlive::ui
