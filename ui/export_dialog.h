#pragma once
// Export dialog: writes the session to an MP4 with the chosen path, codec and quality, with a
// progress bar, an ETA and Cancel. Two sources: the live frames kept in memory (TAEHV preview
// quality, instant), or the current video's latents re-decoded with the Wan VAE (full quality,
// slower; offered once the engine has latents). The codec and quality chosen here are also used
// by live recording (Record / Ctrl+R). Decoding and encoding run on a worker thread; errors
// also reach the window's error banner (RecordingControls::error).
#include <QComboBox>
#include <QDialog>
#include <QElapsedTimer>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace longlive::ui {

class RecordingControls;

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  ExportDialog(RecordingControls* controls, QWidget* parent);
  ~ExportDialog() override;  // cancels a running export and waits for its thread

  enum Decoder { kLiveFrames = 0, kWanVae = 1 };  // rows of the decoder box

  void prepare();  // refreshes the frame counts, the decoders offered and proposes a file name
  void start_export();
  void cancel_export();
  bool exporting() const { return worker_.joinable() && !finished_; }

  // Test access.
  QLineEdit* path_edit() const { return path_; }
  QComboBox* codec_box() const { return codec_; }
  QComboBox* decoder_box() const { return decoder_; }
  bool wan_vae_offered() const;
  QSpinBox* quality_box() const { return crf_; }
  QPushButton* export_button() const { return export_; }
  QPushButton* cancel_button() const { return cancel_; }
  QProgressBar* progress_bar() const { return progress_; }

 signals:
  void export_finished(const QString& path, qint64 frames, const QString& error, bool cancelled);

 protected:
  void reject() override;  // Esc / close: cancels a running export first

 private:
  // A job writes the file, reporting frames through `progress` (false: cancel) and stages
  // through `status`; it returns false when cancelled and throws on failure.
  using Progress = std::function<bool(int64_t done, int64_t total)>;
  using Status = std::function<void(const std::string&)>;
  using Job = std::function<bool(const Progress&, const Status&)>;
  void run_job(Job job);
  void update_info();
  void on_progress(qint64 done, qint64 total);
  void on_done(const QString& path, qint64 frames, const QString& error, bool cancelled);

  RecordingControls* controls_;
  QLineEdit* path_;
  QComboBox* codec_;
  QSpinBox* crf_;
  QComboBox* decoder_;
  QLabel* info_;
  QString frames_text_;  // what the live frames hold (prepare())
  QString wan_text_;     // what a Wan VAE re-decode would write
  QLabel* eta_;
  QProgressBar* progress_;
  QPushButton* export_;
  QPushButton* cancel_;
  QElapsedTimer clock_;
  std::thread worker_;
  std::shared_ptr<std::atomic<bool>> cancel_flag_;
  bool finished_ = true;
};

}  // namespace longlive::ui
