#include "export_dialog.h"

#include <QApplication>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QPointer>
#include <QVBoxLayout>

#include "recording_controls.h"

namespace longlive::ui {

ExportDialog::ExportDialog(RecordingControls* controls, QWidget* parent)
    : QDialog(parent), controls_(controls) {
  setWindowTitle("Export to MP4");
  path_ = new QLineEdit;
  auto* browse = new QPushButton("Browse…");
  codec_ = new QComboBox;
  codec_->addItems(EncoderSettings::codecs());
  codec_->setToolTip(
      "auto: NVENC when the GPU has an encoder, else libx264. libx265/hevc_nvenc: HEVC (smaller "
      "files, not every player)");
  crf_ = new QSpinBox;
  crf_->setRange(0, 51);
  crf_->setToolTip(
      "CRF / CQ: lower is better and larger; 18 is visually lossless-ish, 23 default "
      "web quality");
  info_ = new QLabel;
  info_->setWordWrap(true);
  eta_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setRange(0, 1);
  progress_->setValue(0);
  export_ = new QPushButton("Export");
  export_->setDefault(true);
  cancel_ = new QPushButton("Close");

  auto* path_row = new QHBoxLayout;
  path_row->addWidget(path_, 1);
  path_row->addWidget(browse);
  auto* form = new QFormLayout;
  form->addRow("File", path_row);
  form->addRow("Codec", codec_);
  form->addRow("Quality (CRF)", crf_);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(eta_, 1);
  buttons->addWidget(export_);
  buttons->addWidget(cancel_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addWidget(info_);
  layout->addWidget(progress_);
  layout->addLayout(buttons);
  setMinimumWidth(520);

  connect(browse, &QPushButton::clicked, this, [this] {
    const QString file =
        QFileDialog::getSaveFileName(this, "Export to", path_->text(), "MP4 video (*.mp4)");
    if (!file.isEmpty()) path_->setText(file);
  });
  connect(export_, &QPushButton::clicked, this, &ExportDialog::start_export);
  connect(cancel_, &QPushButton::clicked, this, &ExportDialog::reject);
}

ExportDialog::~ExportDialog() {
  if (cancel_flag_) *cancel_flag_ = true;
  if (worker_.joinable()) worker_.join();
}

void ExportDialog::prepare() {
  const EncoderSettings s = controls_->settings();
  codec_->setCurrentText(s.codec);
  crf_->setValue(s.crf);
  if (path_->text().isEmpty() || !exporting())
    path_->setText(QDir(s.folder).filePath(
        QString("longlive-export-%1.mp4")
            .arg(QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss"))));
  const SessionFrames& frames = controls_->session();
  QString text = QString("%1 frames of this session in memory (%2 s of video, %3 MiB).")
                     .arg(frames.size())
                     .arg(frames.size() / 16.0, 0, 'f', 1)
                     .arg(frames.bytes() / (1024.0 * 1024.0), 0, 'f', 1);
  if (frames.dropped() > 0)
    text += QString(
                " The first %1 frames were dropped to stay within the memory budget "
                "(setting recording/session_memory_mib); use Record for long sessions.")
                .arg(frames.dropped());
  info_->setText(text);
  progress_->setRange(0, 1);
  progress_->setValue(0);
  eta_->clear();
}

void ExportDialog::start_export() {
  if (exporting()) return;
  if (worker_.joinable()) worker_.join();
  EncoderSettings s = controls_->settings();
  s.codec = codec_->currentText();
  s.crf = crf_->value();
  controls_->set_settings(s);  // live recording uses the same encoder settings

  const SessionInfo info = controls_->session_info();
  RecorderOptions o;
  o.path = path_->text().toStdString();
  o.codec = s.codec.toStdString();
  o.crf = s.crf;
  o.model = info.model.toStdString();
  o.preset = info.preset.toStdString();
  o.seed = info.seed;
  SessionFrames::Snapshot snapshot = controls_->session().snapshot();
  const auto total = static_cast<qint64>(snapshot.frames.size());

  progress_->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
  progress_->setValue(0);
  eta_->setText("starting…");
  export_->setEnabled(false);
  cancel_->setText("Cancel");
  clock_.start();
  finished_ = false;
  cancel_flag_ = std::make_shared<std::atomic<bool>>(false);
  QPointer<ExportDialog> self(this);
  worker_ = std::thread(
      [self, o, snapshot = std::move(snapshot), cancel = cancel_flag_, path = path_->text()]() {
        QString error;
        bool complete = false;
        try {
          const int64_t every =
              std::max<int64_t>(1, static_cast<int64_t>(snapshot.frames.size()) / 200);
          complete = export_session(snapshot, o, [&](int64_t done, int64_t n) {
            if (done % every != 0 && done != n) return !*cancel;  // ~200 updates, not one per frame
            QMetaObject::invokeMethod(
                qApp,
                [self, done, n] {
                  if (self) self->on_progress(done, n);
                },
                Qt::QueuedConnection);
            return !*cancel;
          });
        } catch (const std::exception& e) {
          error = e.what();
        }
        const auto frames = static_cast<qint64>(snapshot.frames.size());
        const bool cancelled = error.isEmpty() && !complete;
        QMetaObject::invokeMethod(
            qApp,
            [self, path, frames, error, cancelled] {
              if (self) self->on_done(path, frames, error, cancelled);
            },
            Qt::QueuedConnection);
      });
}

void ExportDialog::cancel_export() {
  if (cancel_flag_) *cancel_flag_ = true;
  eta_->setText("cancelling…");
}

void ExportDialog::reject() {
  if (exporting()) {
    cancel_export();
    return;
  }
  QDialog::reject();
}

void ExportDialog::on_progress(qint64 done, qint64 total) {
  progress_->setValue(static_cast<int>(done));
  const double elapsed_s = clock_.elapsed() / 1000.0;
  const double eta_s = done > 0 ? elapsed_s * static_cast<double>(total - done) / done : 0;
  eta_->setText(
      QString("%1 / %2 frames, about %3 s left").arg(done).arg(total).arg(eta_s, 0, 'f', 0));
}

void ExportDialog::on_done(const QString& path, qint64 frames, const QString& error,
                           bool cancelled) {
  finished_ = true;
  if (worker_.joinable()) worker_.join();
  export_->setEnabled(true);
  cancel_->setText("Close");
  if (!error.isEmpty())
    eta_->setText("Export failed: " + error);
  else if (cancelled)
    eta_->setText("Export cancelled; the partial file was removed.");
  else
    eta_->setText(QString("Wrote %1 (%2 frames)").arg(path).arg(frames));
  emit export_finished(path, cancelled || !error.isEmpty() ? 0 : frames, error, cancelled);
}

}  // namespace longlive::ui
