#pragma once
// Export dialog: writes the session's frames (kept in memory) to an MP4 with the chosen path,
// codec and quality, with a progress bar, an ETA and Cancel. The codec and quality chosen here
// are also used by live recording (Record / Ctrl+R). Encoding runs on its own thread.
#include <QComboBox>
#include <QDialog>
#include <QElapsedTimer>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <atomic>
#include <memory>
#include <thread>

namespace longlive::ui {

class RecordingControls;

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  ExportDialog(RecordingControls* controls, QWidget* parent);
  ~ExportDialog() override;  // cancels a running export and waits for its thread

  void prepare();  // refreshes the frame count and proposes a file name
  void start_export();
  void cancel_export();
  bool exporting() const { return worker_.joinable() && !finished_; }

  // Test access.
  QLineEdit* path_edit() const { return path_; }
  QComboBox* codec_box() const { return codec_; }
  QSpinBox* quality_box() const { return crf_; }
  QPushButton* export_button() const { return export_; }
  QPushButton* cancel_button() const { return cancel_; }
  QProgressBar* progress_bar() const { return progress_; }

 signals:
  void export_finished(const QString& path, qint64 frames, const QString& error, bool cancelled);

 protected:
  void reject() override;  // Esc / close: cancels a running export first

 private:
  void on_progress(qint64 done, qint64 total);
  void on_done(const QString& path, qint64 frames, const QString& error, bool cancelled);

  RecordingControls* controls_;
  QLineEdit* path_;
  QComboBox* codec_;
  QSpinBox* crf_;
  QLabel* info_;
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
