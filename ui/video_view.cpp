#include "video_view.h"

#include <QKeyEvent>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QPainter>
#include <QWheelEvent>

#include "imgui_layer.h"

namespace longlive::ui {

namespace {
constexpr int kVideoFps = 16;
constexpr size_t kMaxBuffered = 48;  // ~3 s: beyond that we show frames as fast as they come
}  // namespace

VideoView::VideoView(QWidget* parent)
    : QOpenGLWidget(parent), imgui_(std::make_unique<ImGuiLayer>()) {
  setMinimumSize(320, 240);
  setFocusPolicy(Qt::ClickFocus);  // keys reach the overlay after a click into the view
  pacer_.setTimerType(Qt::PreciseTimer);
  connect(&pacer_, &QTimer::timeout, this, &VideoView::advance);
  pacer_.start(1000 / kVideoFps);
  clock_.start();
}

VideoView::~VideoView() {
  // The ImGui GL objects belong to this widget's context: release them while it exists, and
  // before ~QOpenGLWidget destroys it (its aboutToBeDestroyed would reach a half-gone view).
  if (context()) {
    disconnect(context(), nullptr, this, nullptr);
    makeCurrent();
    imgui_->shutdown_gl();
    doneCurrent();
  }
}

void VideoView::enqueue(ShownFrame frame) {
  buffer_.push_back(std::move(frame));
  if (!paced_ || buffer_.size() > kMaxBuffered) advance();
}

void VideoView::clear() {
  buffer_.clear();
  current_ = ShownFrame{};
  update();
}

void VideoView::set_overlay_visible(bool visible) {
  overlay_ = visible;
  setMouseTracking(visible);  // hover (plot tooltips) needs moves without a button held
  update();
}

int VideoView::overlay_vertices() const { return imgui_->last_vertex_count(); }

double VideoView::display_fps() const {
  if (shown_ms_.size() < 2) return 0;
  const double span_s = static_cast<double>(shown_ms_.back() - shown_ms_.front()) / 1000.0;
  return span_s > 0 ? static_cast<double>(shown_ms_.size() - 1) / span_s : 0;
}

void VideoView::advance() {
  if (buffer_.empty()) return;
  current_ = std::move(buffer_.front());
  buffer_.pop_front();
  if (current_.first_of_prompt && switch_clock_.isValid()) {
    switch_latency_ms_ = static_cast<double>(switch_clock_.nsecsElapsed()) / 1e6;
    switch_clock_.invalidate();
  }
  shown_ms_.push_back(clock_.elapsed());
  while (shown_ms_.size() > 2 * kVideoFps) shown_ms_.pop_front();
  update();
}

void VideoView::initializeGL() {
  imgui_->initialize_gl();
  // A widget moved to another top-level window gets a new context: release ours first.
  connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
    makeCurrent();
    imgui_->shutdown_gl();
    doneCurrent();
  });
}

void VideoView::paintGL() {
  {
    QPainter p(this);
    p.fillRect(rect(), Qt::black);
    if (!current_.image.isNull()) {
      // Aspect-correct letterboxing.
      const QSize scaled = current_.image.size().scaled(size(), Qt::KeepAspectRatio);
      const QRect target(QPoint((width() - scaled.width()) / 2, (height() - scaled.height()) / 2),
                         scaled);
      p.setRenderHint(QPainter::SmoothPixmapTransform);
      p.drawImage(target, current_.image);
      ++painted_;
      p.setPen(Qt::white);
      p.drawText(rect().adjusted(8, 0, -8, -6), Qt::AlignBottom | Qt::AlignLeft,
                 QString("frame %1  |  %2").arg(current_.index).arg(current_.prompt.left(80)));
      emit frame_shown(current_.index);
    }
  }  // the painter ends here: ImGui draws with raw GL on top
  if (overlay_) paint_overlay();
}

void VideoView::paint_overlay() {
  if (!imgui_->ready() && !imgui_->initialize_gl()) return;
  imgui_->new_frame(size(), devicePixelRatioF());
  overlay_report_ = draw_debug_overlay({.stats = stats_,
                                        .switch_latency_ms = switch_latency_ms_,
                                        .display_fps = display_fps(),
                                        .frame_index = current_.index,
                                        .recording = recording_,
                                        .memory_gib = memory_.allocated_gib,
                                        .peak_memory_gib = memory_.peak_allocated_gib});
  imgui_->render();
}

// Input goes to ImGui only while the overlay is shown; the view itself has no other use for it.
void VideoView::mouseMoveEvent(QMouseEvent* event) {
  if (!overlay_) return QOpenGLWidget::mouseMoveEvent(event);
  imgui_->mouse_move(event->position());
  update();
}

void VideoView::mousePressEvent(QMouseEvent* event) {
  if (!overlay_) return QOpenGLWidget::mousePressEvent(event);
  imgui_->mouse_move(event->position());
  imgui_->mouse_button(event->button(), true);
  update();
}

void VideoView::mouseReleaseEvent(QMouseEvent* event) {
  if (!overlay_) return QOpenGLWidget::mouseReleaseEvent(event);
  imgui_->mouse_move(event->position());
  imgui_->mouse_button(event->button(), false);
  update();
}

void VideoView::wheelEvent(QWheelEvent* event) {
  if (!overlay_ || !imgui_->wheel(event->angleDelta())) return QOpenGLWidget::wheelEvent(event);
  update();
}

void VideoView::keyPressEvent(QKeyEvent* event) {
  // F1/F11 stay with the window; other keys go to ImGui when it wants the keyboard.
  if (!overlay_ || event->key() == Qt::Key_F1 || event->key() == Qt::Key_F11 ||
      !imgui_->key(*event, true))
    return QOpenGLWidget::keyPressEvent(event);
  update();
}

void VideoView::keyReleaseEvent(QKeyEvent* event) {
  if (!overlay_ || !imgui_->key(*event, false)) return QOpenGLWidget::keyReleaseEvent(event);
  update();
}

}  // namespace longlive::ui
