#pragma once
// Shows the generated frames: an OpenGL widget that letterboxes the latest frame, paces frames
// from a small jitter buffer at the video's 16 fps (or as fast as they come), and draws the
// timing overlay (F1).
#include <QElapsedTimer>
#include <QImage>
#include <QOpenGLWidget>
#include <QTimer>
#include <deque>

#include "longlive/engine.h"

namespace longlive::ui {

struct ShownFrame {
  QImage image;
  int64_t index = 0;
  QString prompt;
  bool first_of_prompt = false;
};

class VideoView : public QOpenGLWidget {
  Q_OBJECT
 public:
  explicit VideoView(QWidget* parent = nullptr);

  void enqueue(ShownFrame frame);  // UI thread
  void clear();
  void set_stats(const EngineStats& stats) { stats_ = stats; }
  void set_paced(bool paced) { paced_ = paced; }
  void set_overlay_visible(bool visible);
  bool overlay_visible() const { return overlay_; }

  int64_t frames_painted() const { return painted_; }
  const ShownFrame& current() const { return current_; }
  // Milliseconds from a prompt switch request to the first frame of the new prompt on screen.
  double switch_latency_ms() const { return switch_latency_ms_; }
  void mark_switch_requested() { switch_clock_.start(); }

 signals:
  void frame_shown(int64_t index);

 protected:
  void paintGL() override;

 private:
  void advance();

  std::deque<ShownFrame> buffer_;
  ShownFrame current_;
  QTimer pacer_;
  bool paced_ = true;
  bool overlay_ = false;
  int64_t painted_ = 0;
  EngineStats stats_;
  QElapsedTimer switch_clock_;
  double switch_latency_ms_ = 0;
};

}  // namespace longlive::ui
