#include "video_view.h"

#include <QPainter>
#include <QPainterPath>

namespace longlive::ui {

namespace {
constexpr int kVideoFps = 16;
constexpr size_t kMaxBuffered = 48;  // ~3 s: beyond that we show frames as fast as they come
}  // namespace

VideoView::VideoView(QWidget* parent) : QOpenGLWidget(parent) {
  setMinimumSize(320, 240);
  pacer_.setTimerType(Qt::PreciseTimer);
  connect(&pacer_, &QTimer::timeout, this, &VideoView::advance);
  pacer_.start(1000 / kVideoFps);
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
  update();
}

void VideoView::advance() {
  if (buffer_.empty()) return;
  current_ = std::move(buffer_.front());
  buffer_.pop_front();
  if (current_.first_of_prompt && switch_clock_.isValid()) {
    switch_latency_ms_ = static_cast<double>(switch_clock_.nsecsElapsed()) / 1e6;
    switch_clock_.invalidate();
  }
  update();
}

void VideoView::paintGL() {
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
  if (!overlay_) return;
  // Timing overlay: numbers and the block-latency plot of the last 200 blocks (red = switch).
  const QRect box(10, 10, 360, 170);
  p.fillRect(box, QColor(0, 0, 0, 170));
  p.setPen(Qt::white);
  const QStringList lines = {
      QString("state %1  preset %2  device %3")
          .arg(QString::fromStdString(stats_.state), QString::fromStdString(stats_.preset),
               QString::fromStdString(stats_.device)),
      QString("block %1 ms   generation %2 fps   frames %3")
          .arg(stats_.last_block_ms, 0, 'f', 1)
          .arg(stats_.fps, 0, 'f', 1)
          .arg(stats_.frames),
      QString("prompt switch: %1 ms to first frame (engine %2 ms)")
          .arg(switch_latency_ms_, 0, 'f', 0)
          .arg(stats_.last_switch_ms, 0, 'f', 0),
      QString("prompt cache hits %1  misses %2")
          .arg(stats_.prompt_cache_hits)
          .arg(stats_.prompt_cache_misses)};
  for (int i = 0; i < lines.size(); ++i)
    p.drawText(box.left() + 8, box.top() + 18 + 16 * i, lines[i]);
  const QRect plot(box.left() + 8, box.top() + 86, box.width() - 16, 76);
  p.setPen(QColor(90, 90, 90));
  p.drawRect(plot);
  if (stats_.block_ms.empty()) return;
  const double peak =
      std::max(1.0, *std::max_element(stats_.block_ms.begin(), stats_.block_ms.end()));
  const double dx = static_cast<double>(plot.width()) / 200.0;
  QPainterPath path;
  for (size_t i = 0; i < stats_.block_ms.size(); ++i) {
    const QPointF pt(plot.left() + i * dx,
                     plot.bottom() - stats_.block_ms[i] / peak * plot.height());
    i == 0 ? path.moveTo(pt) : path.lineTo(pt);
    if (stats_.block_was_switch[i]) {
      p.setPen(Qt::red);
      p.drawLine(QPointF(pt.x(), plot.top()), QPointF(pt.x(), plot.bottom()));
    }
  }
  p.setPen(QColor(80, 220, 120));
  p.drawPath(path);
}

}  // namespace longlive::ui
