#pragma once
// Control inputs (docs/vace.md): the source of a VACE or video-to-video input (None, Camera…,
// Video file…, Reference image…), VACE mode and mask, a built-in preprocessor, live sliders for
// the VACE scale and the video-to-video strength, a thumbnail of the control signal and the
// camera's dropped / repeated frame counts. Like the other panels it only describes what to send
// (MainWindow sends it to the engine); sync() follows the engine's state, so OSC moves show.
#include <ATen/core/Tensor.h>

#include <QComboBox>
#include <QImage>
#include <QLabel>
#include <QPushButton>
#include <QSlider>
#include <QString>
#include <QWidget>

#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive::ui {

class InputPanel : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kScaleSteps = 200;     // slider steps for 0..kMaxVaceScale
  static constexpr int kStrengthSteps = 100;  // slider steps for 0..1 (0 is refused: 1 step min)
  static constexpr int kPreviewHeight = 72;   // thumbnail height on screen

  explicit InputPanel(QWidget* parent = nullptr);
  ~InputPanel() override;

  // The source the dialogs give (a file, or a camera's device): sends it to the chosen target
  // (VACE or video-to-video) with the current mode, mask, preprocessor, scale / strength.
  void choose(InputKind kind, const QString& path);
  void clear();  // "None": the chosen target's input off
  void sync(const InputStatus& status);

  // An inpainting mask image (white = generate, black = keep), from "Mask…" or a rectangle drawn
  // on the video: the VACE mode becomes inpaint and a running input is sent again with it.
  void set_mask(const QString& path);
  const QString& mask() const { return mask_; }

  // The request choose() would send now (tests, and a re-send when mode or preprocessing move).
  VaceRequest vace_request() const;
  V2vRequest v2v_request() const;

  QComboBox* source_box() const { return source_; }
  QComboBox* target_box() const { return target_; }
  QComboBox* mode_box() const { return mode_; }
  QComboBox* preprocess_box() const { return preprocess_; }
  QPushButton* mask_button() const { return mask_button_; }
  // Checkable: while down, a rectangle dragged over the video becomes the mask (MainWindow).
  QPushButton* draw_mask_button() const { return draw_mask_button_; }
  QSlider* scale_slider() const { return scale_; }
  QSlider* strength_slider() const { return strength_; }
  QLabel* preview_label() const { return preview_; }
  QLabel* counts_label() const { return counts_; }
  QLabel* state_label() const { return state_; }
  bool vace_unavailable_shown() const { return unavailable_->isVisible(); }
  QLabel* interrupted_label() const { return interrupted_; }

 signals:
  void vace_requested(const longlive::VaceRequest& request);
  void vace_cleared();
  void mask_drawing_toggled(bool on);
  void v2v_requested(const longlive::V2vRequest& request);
  void v2v_cleared();
  void vace_scale_changed(double scale);
  void v2v_strength_changed(double strength);

 private:
  bool vace_target() const { return target_->currentIndex() == 0; }
  InputSource source() const;
  void resend();  // mode, mask or preprocessor moved: the current input again, changed
  void pick(int index);

  QComboBox* source_ = nullptr;
  QComboBox* target_ = nullptr;
  QComboBox* mode_ = nullptr;
  QComboBox* preprocess_ = nullptr;
  QPushButton* mask_button_ = nullptr;
  QPushButton* draw_mask_button_ = nullptr;
  QSlider* scale_ = nullptr;
  QSlider* strength_ = nullptr;
  QLabel* scale_value_ = nullptr;
  QLabel* strength_value_ = nullptr;
  QLabel* preview_ = nullptr;
  QLabel* counts_ = nullptr;
  QLabel* state_ = nullptr;
  QLabel* unavailable_ = nullptr;
  QLabel* interrupted_ = nullptr;  // a lost camera being reopened
  InputKind kind_ = InputKind::none;
  QString path_;
  QString mask_;
};

// The mask of a rectangle drawn over a frame of `size` (fractions of its width and height):
// white inside (generated), black outside (kept); a pixel is inside when its centre is.
QImage rectangle_mask(const QRectF& fraction, QSize size);

}  // namespace longlive::ui
