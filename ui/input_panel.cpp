#include "input_panel.h"

#include <QFileDialog>
#include <QHBoxLayout>
#include <QImage>
#include <QInputDialog>
#include <QLineEdit>
#include <QPixmap>
#include <QSignalBlocker>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

namespace longlive::ui {
namespace {

// The FFmpeg input device a camera spec names: /dev/videoN is V4L2, "testsrc2=..." a lavfi
// pattern, ":0.0" an X11 screen.
std::string camera_format(const QString& spec) {
  if (spec.startsWith("/dev/")) return "v4l2";
  if (spec.startsWith(":")) return "x11grab";
  if (spec.contains('=')) return "lavfi";
  return "v4l2";
}

}  // namespace

InputPanel::InputPanel(QWidget* parent) : QWidget(parent) {
  auto* row = new QHBoxLayout(this);
  row->setContentsMargins(0, 0, 0, 0);
  source_ = new QComboBox;
  source_->addItems({"Input: none", "Camera…", "Video file…", "Reference image…"});
  source_->setToolTip(
      "Where the control frames come from: a camera, a video file (16 fps, looped) or a "
      "reference picture");
  target_ = new QComboBox;
  target_->addItems({"VACE", "Video-to-video"});
  target_->setToolTip(
      "VACE: the video follows the input's structure (depth, pose, edges, a reference). "
      "Video-to-video: the input itself, restyled (its frames noised to the strength)");
  mode_ = new QComboBox;
  mode_->addItems({"conditioning", "inpaint"});
  mode_->setToolTip(
      "VACE mode: conditioning (all frames guide) or inpaint (the mask's white "
      "parts are generated, black kept)");
  mask_button_ = new QPushButton("Mask…");
  mask_button_->setToolTip("Inpainting mask image: white = generate, black = keep");
  draw_mask_button_ = new QPushButton("Draw mask");
  draw_mask_button_->setCheckable(true);
  draw_mask_button_->setToolTip(
      "Drag a rectangle over the video: inside is generated, outside kept (inpaint mode)");
  preprocess_ = new QComboBox;
  preprocess_->addItems({"no preprocessing", "gray", "edges"});
  preprocess_->setToolTip("Built-in preprocessor of the input frames (runs on the GPU)");
  scale_ = new QSlider(Qt::Horizontal);
  scale_->setRange(0, kScaleSteps);
  scale_->setValue(kScaleSteps / 2);
  scale_->setMinimumWidth(80);
  scale_->setToolTip("VACE scale 0–2: how strongly the input steers (next block)");
  scale_value_ = new QLabel("1.00");
  strength_ = new QSlider(Qt::Horizontal);
  strength_->setRange(1, kStrengthSteps);
  strength_->setValue(60);
  strength_->setMinimumWidth(80);
  strength_->setToolTip(
      "Video-to-video strength: 1 = ignore the input, lower keeps more of it (next block)");
  strength_value_ = new QLabel("0.60");
  preview_ = new QLabel;
  preview_->setFixedHeight(kPreviewHeight);
  preview_->setMinimumWidth(kPreviewHeight);
  preview_->setToolTip("The control signal of the last block (after preprocessing)");
  counts_ = new QLabel;
  state_ = new QLabel;
  unavailable_ = new QLabel;
  unavailable_->setStyleSheet("color: #d04040");
  unavailable_->hide();
  interrupted_ = new QLabel;
  interrupted_->setStyleSheet("color: #d08020");
  interrupted_->setWordWrap(true);
  interrupted_->hide();
  for (QWidget* w : std::initializer_list<QWidget*>{
           source_, target_, mode_, mask_button_, draw_mask_button_, preprocess_,
           new QLabel("scale"), scale_, scale_value_, new QLabel("strength"), strength_,
           strength_value_, preview_})
    row->addWidget(w);
  auto* text = new QVBoxLayout;
  text->addWidget(state_);
  text->addWidget(counts_);
  text->addWidget(interrupted_);
  text->addWidget(unavailable_);
  row->addLayout(text, 1);

  connect(source_, &QComboBox::activated, this, [this](int index) { pick(index); });
  connect(mode_, &QComboBox::currentIndexChanged, this, [this] { resend(); });
  connect(preprocess_, &QComboBox::currentIndexChanged, this, [this] { resend(); });
  connect(mask_button_, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Inpainting mask", {},
                                                      "Images (*.png *.jpg *.jpeg *.bmp *.webp)");
    if (!path.isEmpty()) set_mask(path);
  });
  connect(draw_mask_button_, &QPushButton::toggled, this,
          [this](bool on) { emit mask_drawing_toggled(on); });
  connect(scale_, &QSlider::valueChanged, this, [this](int v) {
    const double scale = kMaxVaceScale * v / kScaleSteps;
    scale_value_->setText(QString::number(scale, 'f', 2));
    emit vace_scale_changed(scale);
  });
  connect(strength_, &QSlider::valueChanged, this, [this](int v) {
    const double strength = static_cast<double>(v) / kStrengthSteps;
    strength_value_->setText(QString::number(strength, 'f', 2));
    emit v2v_strength_changed(strength);
  });
}

InputPanel::~InputPanel() = default;

void InputPanel::pick(int index) {
  switch (index) {
    case 0:
      clear();
      return;
    case 1: {
      bool ok = false;
      const QString spec = QInputDialog::getText(
          this, "Camera",
          "Camera device (/dev/video0), a screen (:0.0) or an FFmpeg test pattern "
          "(testsrc2=size=640x480:rate=30)",
          QLineEdit::Normal, path_.startsWith("/dev/") ? path_ : "/dev/video0", &ok);
      if (ok && !spec.isEmpty()) choose(InputKind::camera, spec);
      return;
    }
    case 2: {
      const QString path = QFileDialog::getOpenFileName(
          this, "Control video", {}, "Videos (*.mp4 *.mov *.mkv *.webm *.avi);;All files (*)");
      if (!path.isEmpty()) choose(InputKind::video, path);
      return;
    }
    case 3: {
      const QString path = QFileDialog::getOpenFileName(this, "Reference image", {},
                                                        "Images (*.png *.jpg *.jpeg *.bmp *.webp)");
      if (!path.isEmpty()) choose(InputKind::image, path);
      return;
    }
    default:
      return;
  }
}

InputSource InputPanel::source() const {
  InputSource s;
  s.kind = kind_;
  s.path = path_.toStdString();
  if (kind_ == InputKind::camera) s.format = camera_format(path_);
  const int p = preprocess_->currentIndex();
  s.preprocess = p == 1 ? "gray" : p == 2 ? "edges" : "";
  return s;
}

VaceRequest InputPanel::vace_request() const {
  VaceRequest r;
  r.scale = kMaxVaceScale * scale_->value() / kScaleSteps;
  if (kind_ == InputKind::image) {  // a picture for VACE is a reference (reference-to-video)
    r.mode = "reference";
    r.reference = path_.toStdString();
    return r;
  }
  r.source = source();
  r.mode = mode_->currentText().toStdString();
  if (r.mode == "inpaint") r.mask = mask_.toStdString();
  return r;
}

V2vRequest InputPanel::v2v_request() const {
  V2vRequest r;
  r.source = source();
  r.strength = static_cast<double>(strength_->value()) / kStrengthSteps;
  return r;
}

void InputPanel::choose(InputKind kind, const QString& path) {
  kind_ = kind;
  path_ = path;
  {
    const QSignalBlocker quiet(source_);
    source_->setCurrentIndex(kind == InputKind::camera  ? 1
                             : kind == InputKind::video ? 2
                             : kind == InputKind::image ? 3
                                                        : 0);
  }
  if (kind == InputKind::none) {
    clear();
    return;
  }
  if (vace_target())
    emit vace_requested(vace_request());
  else
    emit v2v_requested(v2v_request());
}

void InputPanel::clear() {
  kind_ = InputKind::none;
  path_.clear();
  const QSignalBlocker quiet(source_);
  source_->setCurrentIndex(0);
  if (vace_target())
    emit vace_cleared();
  else
    emit v2v_cleared();
}

void InputPanel::set_mask(const QString& path) {
  mask_ = path;
  {
    const QSignalBlocker quiet(mode_);  // one send below, not one per change
    mode_->setCurrentIndex(1);          // a mask means inpainting
  }
  draw_mask_button_->setChecked(false);
  resend();
}

QImage rectangle_mask(const QRectF& fraction, QSize size) {
  QImage mask(size, QImage::Format_Grayscale8);
  mask.fill(Qt::black);
  const QRectF r = fraction.normalized();
  // Pixel x is inside when x + 0.5 lies in [left, right) of the rectangle in pixels.
  const int x0 = static_cast<int>(std::ceil(r.left() * size.width() - 0.5));
  const int x1 = static_cast<int>(std::ceil(r.right() * size.width() - 0.5));
  const int y0 = static_cast<int>(std::ceil(r.top() * size.height() - 0.5));
  const int y1 = static_cast<int>(std::ceil(r.bottom() * size.height() - 0.5));
  for (int y = std::max(y0, 0); y < std::min(y1, size.height()); ++y) {
    uchar* line = mask.scanLine(y);
    for (int x = std::max(x0, 0); x < std::min(x1, size.width()); ++x) line[x] = 255;
  }
  return mask;
}

void InputPanel::resend() {
  if (kind_ == InputKind::none) return;
  if (vace_target() && mode_->currentText() == "inpaint" && mask_.isEmpty()) return;  // wait
  choose(kind_, path_);
}

void InputPanel::sync(const InputStatus& s) {
  QStringList active;
  if (!s.vace.empty()) active << QString("VACE %1").arg(QString::fromStdString(s.vace));
  if (!s.v2v.empty()) active << QString("V2V %1").arg(QString::fromStdString(s.v2v));
  const QString opening =
      s.opening.empty() ? QString() : QString("opening %1…").arg(QString::fromStdString(s.opening));
  if (active.isEmpty())
    state_->setText(opening.isEmpty() ? "no input" : opening);
  else
    state_->setText(active.join(" · ") + (opening.isEmpty() ? QString() : " · " + opening));
  QString counts = QString("frames %1 · dropped %2 · repeated %3")
                       .arg(s.frames_used)
                       .arg(s.dropped)
                       .arg(s.repeated);
  if (!s.framing.empty()) counts += " · " + QString::fromStdString(s.framing);
  counts_->setText(active.isEmpty() ? QString() : counts);
  // A camera lost and being reopened: its last frame is held meanwhile (LiveVideoOptions).
  interrupted_->setText(s.interrupted.empty() ? QString()
                                              : QString("Input lost, holding its last frame: %1")
                                                    .arg(QString::fromStdString(s.interrupted)));
  interrupted_->setVisible(!s.interrupted.empty());
  // A model without VACE weights: say so where the input is chosen (video-to-video still works).
  const bool unavailable = !s.vace_available && !s.vace_status.empty();
  unavailable_->setText(
      unavailable ? QString("VACE unavailable — %1").arg(QString::fromStdString(s.vace_status))
                  : QString());
  unavailable_->setVisible(unavailable);
  // Values moved elsewhere (OSC, MIDI) show here; a slider being dragged keeps the hand's value.
  if (!s.vace.empty() && !scale_->isSliderDown()) {
    const QSignalBlocker quiet(scale_);
    scale_->setValue(static_cast<int>(std::lround(s.vace_scale / kMaxVaceScale * kScaleSteps)));
    scale_value_->setText(QString::number(s.vace_scale, 'f', 2));
  }
  if (!s.v2v.empty() && !strength_->isSliderDown()) {
    const QSignalBlocker quiet(strength_);
    strength_->setValue(static_cast<int>(std::lround(s.v2v_strength * kStrengthSteps)));
    strength_value_->setText(QString::number(s.v2v_strength, 'f', 2));
  }
  if (s.preview.defined() && s.preview.dim() == 3 && s.preview.size(2) == 3) {
    const at::Tensor p = s.preview.contiguous();
    const QImage image(static_cast<const uchar*>(p.data_ptr()), static_cast<int>(p.size(1)),
                       static_cast<int>(p.size(0)), static_cast<int>(p.stride(0)),
                       QImage::Format_RGB888);
    preview_->setPixmap(QPixmap::fromImage(image.copy()).scaledToHeight(kPreviewHeight));
  } else if (active.isEmpty()) {
    preview_->clear();
  }
}

}  // namespace longlive::ui
