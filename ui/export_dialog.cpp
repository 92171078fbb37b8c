#include "export_dialog.h"

#include <QApplication>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QPointer>
#include <QSettings>
#include <QStandardItemModel>
#include <QVBoxLayout>
#include <algorithm>

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
  decoder_ = new QComboBox;
  decoder_->addItem("live frames (TAEHV)");
  decoder_->addItem("Wan VAE re-decode");
  decoder_->setToolTip(
      "live frames: the frames of the session kept on the host (the TAEHV preview decoder, or "
      "the Wan VAE with a 'decoder: wan' preset), written at once. With CUDA-GL interop the "
      "frames are copied to the host only while recording or sending video out.\n"
      "Wan VAE re-decode: the current video's latents decoded again by the full Wan 2.1 VAE "
      "(best quality, slower; needs Wan2.1_VAE.pth in the model folder)");
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
  form->addRow("Decoder", decoder_);
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
  connect(decoder_, &QComboBox::currentIndexChanged, this, &ExportDialog::update_info);
  connect(export_, &QPushButton::clicked, this, &ExportDialog::start_export);
  connect(cancel_, &QPushButton::clicked, this, &ExportDialog::reject);
}

ExportDialog::~ExportDialog() {
  if (cancel_flag_) *cancel_flag_ = true;
  if (worker_.joinable()) worker_.join();
}

bool ExportDialog::wan_vae_offered() const {
  const auto* model = qobject_cast<const QStandardItemModel*>(decoder_->model());
  return model && model->item(kWanVae)->isEnabled();
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
  frames_text_ = QString("%1 frames of this session in memory (%2 s of video, %3 MiB).")
                     .arg(frames.size())
                     .arg(frames.size() / 16.0, 0, 'f', 1)
                     .arg(frames.bytes() / (1024.0 * 1024.0), 0, 'f', 1);
  if (frames.not_copied() > 0)
    frames_text_ += QString(
                        " %1 frames were shown from the GPU only and are not among them (the "
                        "frames are copied to the host while recording or sending video out); "
                        "the Wan VAE re-decode covers the whole video.")
                        .arg(frames.not_copied());
  if (frames.dropped() > 0)
    frames_text_ += QString(
                        " The first %1 frames were dropped to stay within the memory budget "
                        "(setting recording/session_memory_mib); use Record for long sessions.")
                        .arg(frames.dropped());
  // The Wan VAE needs the engine's latents of the current video (since its last start; the most
  // recent within the engine's cap, recording/kept_latents_mib, not the frame budget).
  const SessionLatents latents = controls_->session_latents();
  auto* model = qobject_cast<QStandardItemModel*>(decoder_->model());
  model->item(kWanVae)->setEnabled(!latents.empty());
  if (latents.empty() && decoder_->currentIndex() == kWanVae)
    decoder_->setCurrentIndex(kLiveFrames);
  wan_text_ =
      latents.empty()
          ? QString("No latents yet: start a video to re-decode it with the Wan VAE.")
          : QString(
                "Wan VAE re-decode of the current video (since its last start): %1 frames "
                "from %2 latent frames, at full quality; slower than the live preview (device "
                "memory budget: setting recording/wan_vae_memory_mib).")
                .arg(latents.video_frames())
                .arg(latents.latent_frames());
  if (const std::string gone = latents.dropped_start_text(); !gone.empty())
    wan_text_ += " " + QString::fromStdString(gone);
  update_info();
  if (exporting()) return;  // the running export keeps its progress
  progress_->setRange(0, 1);
  progress_->setValue(0);
  eta_->clear();
}

void ExportDialog::update_info() {
  info_->setText(decoder_->currentIndex() == kWanVae ? wan_text_ : frames_text_);
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
  if (decoder_->currentIndex() == kWanVae) {
    // Only tensor handles are taken here; concatenating, loading and decoding run on the worker.
    const SessionLatents latents = controls_->session_latents();
    WanExportOptions wan;
    wan.memory_budget_bytes = QSettings("LongLive", "Studio")
                                  .value("recording/wan_vae_memory_mib", qlonglong{4096})
                                  .toLongLong()
                              << 20;
    run_job([latents, o, wan](const Progress& progress, const Status& status) {
      return export_session_wan(latents, o, wan, progress, status);
    });
  } else {
    SessionFrames::Snapshot snapshot = controls_->session().snapshot();
    run_job([snapshot = std::move(snapshot), o](const Progress& progress, const Status&) {
      return export_session(snapshot, o, progress);
    });
  }
}

void ExportDialog::run_job(Job job) {
  progress_->setRange(0, 1);
  progress_->setValue(0);
  eta_->setText("starting…");
  export_->setEnabled(false);
  decoder_->setEnabled(false);
  cancel_->setText("Cancel");
  clock_.start();
  finished_ = false;
  cancel_flag_ = std::make_shared<std::atomic<bool>>(false);
  QPointer<ExportDialog> self(this);
  worker_ = std::thread([self, job = std::move(job), cancel = cancel_flag_, path = path_->text()] {
    // Everything here runs on the worker; results hop to the UI thread (if the dialog is alive).
    auto post = [self](std::function<void(ExportDialog&)> f) {
      QMetaObject::invokeMethod(
          qApp,
          [self, f = std::move(f)] {
            if (self) f(*self);
          },
          Qt::QueuedConnection);
    };
    QString error;
    bool complete = false;
    int64_t frames = 0;
    try {
      complete = job(
          [&](int64_t done, int64_t total) {
            frames = total;
            const int64_t every = std::max<int64_t>(1, total / 200);  // ~200 updates
            if (done % every == 0 || done == total)
              post([done, total](ExportDialog& d) { d.on_progress(done, total); });
            return !*cancel;
          },
          [&](const std::string& line) {
            post([text = QString::fromStdString(line)](ExportDialog& d) {
              d.eta_->setText(text + "…");
            });
          });
    } catch (const std::exception& e) {
      error = e.what();
    }
    const bool cancelled = error.isEmpty() && !complete;
    post([path, frames, error, cancelled](ExportDialog& d) {
      d.on_done(path, frames, error, cancelled);
    });
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
  if (progress_->maximum() != total)
    progress_->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
  progress_->setValue(static_cast<int>(done));
  if (done == 0) {  // decoding starts (the Wan VAE is loaded): time the frames from here
    clock_.restart();
    eta_->setText(QString("0 / %1 frames").arg(total));
    return;
  }
  const double elapsed_s = clock_.elapsed() / 1000.0;
  const double eta_s = done > 0 ? elapsed_s * static_cast<double>(total - done) / done : 0;
  eta_->setText(
      QString("%1 / %2 frames, about %3 s left").arg(done).arg(total).arg(eta_s, 0, 'f', 0));
}

void ExportDialog::on_done(const QString& path, qint64 frames, const QString& error,
                           bool cancelled) {
  finished_ = true;
  if (worker_.joinable()) worker_.join();  // it has posted this: at most a few ms left
  export_->setEnabled(true);
  decoder_->setEnabled(true);
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
