#include "model_setup_panel.h"

#include <QHBoxLayout>
#include <QVBoxLayout>

namespace longlive::ui {
namespace {

// Keep in sync with README.md "Model files" and missing_model_files() in the engine.
constexpr const char* kLayout =
    "MODELS/                                  (any layout inside: files are found by name)\n"
    "  longlive_base.pt                       Efficient-Large-Model/LongLive-1.3B  models/\n"
    "    or diffusion_pytorch_model.safetensors  Wan-AI/Wan2.1-T2V-1.3B\n"
    "  lora.pt                  (optional)    Efficient-Large-Model/LongLive-1.3B  models/\n"
    "  models_t5_umt5-xxl-enc-bf16.pth        Wan-AI/Wan2.1-T2V-1.3B\n"
    "  google/umt5-xxl/spiece.model           Wan-AI/Wan2.1-T2V-1.3B\n"
    "  taew2_1.pth                            madebyollin/taehv";

}  // namespace

ModelSetupPanel::ModelSetupPanel(QWidget* parent) : QFrame(parent) {
  setObjectName("modelSetup");
  setStyleSheet(
      "#modelSetup{background:#262a30;border:1px solid #4a5360;border-radius:6px} "
      "QLabel{color:#e8e8e8}");
  auto* title = new QLabel("<b>Model files needed</b>");
  missing_ = new QLabel;
  missing_->setWordWrap(true);
  missing_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* layout_label = new QLabel(kLayout);
  layout_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  QFont mono("monospace");
  mono.setStyleHint(QFont::Monospace);
  layout_label->setFont(mono);
  auto* hint = new QLabel(
      "Download the files once (see the README, section \"Model files\"), put them in one "
      "folder and choose it. Nothing is downloaded by the app.");
  hint->setWordWrap(true);
  choose_ = new QPushButton("Choose model folder…");
  tiny_ = new QPushButton("Try the tiny random model (CPU, no download)");
  tiny_->setToolTip(
      "A random model small enough for the CPU: the pictures are noise by design, "
      "but every part of the app works");
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(choose_);
  buttons->addWidget(tiny_);
  buttons->addStretch(1);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(title);
  layout->addWidget(missing_);
  layout->addWidget(hint);
  layout->addWidget(layout_label);
  layout->addLayout(buttons);
  connect(choose_, &QPushButton::clicked, this, &ModelSetupPanel::choose_folder_requested);
  connect(tiny_, &QPushButton::clicked, this, &ModelSetupPanel::tiny_requested);
  hide();
}

void ModelSetupPanel::show_for(const QString& folder, const std::vector<std::string>& missing) {
  QStringList items;
  for (const auto& m : missing) items << "✗ " + QString::fromStdString(m).toHtmlEscaped();
  if (folder.isEmpty())
    missing_->setText("No model folder is chosen yet: it must hold the files below.");
  else
    missing_->setText(QString("The folder <tt>%1</tt> is missing:<br>%2")
                          .arg(folder.toHtmlEscaped(), items.join("<br>")));
  show();
}

}  // namespace longlive::ui
