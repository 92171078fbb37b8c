#pragma once
// Shows the generated frames: an OpenGL widget that takes frames from a small jitter buffer when
// its FramePacer says they are due (evenly, at the rate they are generated, with a cushion for
// late blocks; frame_pacer.h), uploads the frame on screen into a texture and draws it
// letterboxed (shaders/video.*), then the Dear ImGui debug overlay (F1) on top, with Qt's input
// forwarded to it while it is shown. The view never falls behind: past a small queue bound the
// oldest frames are dropped, and a new prompt's first frame skips the old prompt's queued frames;
// both are counted (frames_dropped(), the overlay).
// Upload, per frame: a frame with a device copy goes GPU to GPU through CUDA-GL interop
// (CudaGlUploader); any other frame, or every frame after interop failed once, is uploaded from
// host memory with glTexSubImage2D.
#include <QElapsedTimer>
#include <QImage>
#include <QOpenGLBuffer>
#include <QOpenGLShaderProgram>
#include <QOpenGLVertexArrayObject>
#include <QOpenGLWidget>
#include <QTimer>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "debug_overlay.h"
#include "frame_pacer.h"
#include "longlive/engine.h"
#include "longlive/profiler.h"
#include "upload_path.h"

namespace longlive::ui {

struct ShownFrame {
  // RGBA8888 on the host: the host upload path and the fallback. Null when the engine made no
  // host copy (the frame is only on the GPU, `device`).
  QImage image;
  QSize size;  // of the frame, on the host or the GPU
  int64_t index = 0;
  QString prompt;
  bool first_of_prompt = false;
  DeviceFrame device;  // the same frame on the GPU, when the engine hands it out
};

class ImGuiLayer;
class CudaGlUploader;

class VideoView : public QOpenGLWidget {
  Q_OBJECT
 public:
  explicit VideoView(QWidget* parent = nullptr);
  ~VideoView() override;

  void enqueue(ShownFrame frame);  // UI thread
  void clear();
  // Every stats update of the engine, in order (the last switch's prompt source follows them).
  void set_stats(const EngineStats& stats);
  // Whether the newest prompt switch (or start) found its prompt in the engine's prompt cache.
  PromptSource last_switch_source() const { return last_switch_source_; }
  void set_memory(const DeviceMemory& memory) { memory_ = memory; }
  // Paced (the default): frames are spread evenly at the rate they arrive; unpaced: each frame
  // is shown as it arrives.
  void set_paced(bool paced) { queue_.pacer().set_paced(paced); }
  void set_overlay_visible(bool visible);
  // Brings the overlay's Kernels tab to the front (as a click on it would).
  // Paints at once (and the overlay frames it takes), new video frames or not.
  void show_kernels_tab() {
    select_kernels_frames_ = 2;
    update();
  }
  bool overlay_visible() const { return overlay_; }
  // Whether the overlay shows its Kernels tab (the engine samples kernels only then).
  bool kernels_view_shown() const { return kernels_shown_; }
  void set_recording(bool recording) { recording_ = recording; }
  // What the overlay drew last (regions, plotted blocks, switch markers) and ImGui's vertices.
  const OverlayReport& overlay_report() const { return overlay_report_; }
  int overlay_vertices() const;
  double display_fps() const;

  // Whether the engine should hand out device frames (EngineOptions::device_frames): interop is
  // built and has not failed.
  bool wants_device_frames() const { return selector_.wants_device_frames(); }
  // How the frame on screen was uploaded: "upload: CUDA-GL interop" or "upload: host".
  QString upload_status() const;

  int64_t frames_painted() const { return painted_; }
  // Frames dropped instead of shown late since the last clear() (see the header comment).
  int64_t frames_dropped() const { return queue_.pacer().dropped(); }
  // The pacer's events while `pacing_trace().on` (off by default), for replaying a run's timing.
  PacingTrace& pacing_trace() { return trace_; }
  // The frame interval the pacer currently aims at (about the generation rate's).
  double pace_interval_ms() const { return queue_.pacer().interval_ms(); }
  // How long the last paints took (paintGL: upload, draw, overlay), oldest first.
  std::vector<double> paint_ms() const { return {paint_ms_.begin(), paint_ms_.end()}; }
  // Interop was given up (a failed upload, or no frame shaders): the window turns the engine's
  // host copies back on.
  void set_interop_lost_handler(std::function<void()> handler) {
    interop_lost_ = std::move(handler);
  }
  const ShownFrame& current() const { return current_; }
  // Milliseconds from a prompt switch request to the first frame of the new prompt on screen.
  double switch_latency_ms() const { return switch_latency_ms_; }
  void mark_switch_requested() { switch_clock_.start(); }
  // Drawing an inpainting rectangle (the input panel's "Draw mask"): a left drag over the frame
  // shows the rectangle and, on release, reports it (mask_rect_drawn) instead of reaching the
  // overlay.
  void set_mask_drawing(bool on);
  bool mask_drawing() const { return mask_drawing_; }
  // Where the frame is drawn in the widget (letterboxed; the whole widget before a frame).
  QRect frame_rect() const;
  // Where a widget position falls on the frame on screen, as fractions of its width and height
  // (clamped to the frame: a drag may leave it).
  QPointF frame_fraction(QPointF widget_pos) const;

 signals:
  void frame_shown(int64_t index);
  // The Kernels tab came to the front or left the screen (its tab or the overlay closed).
  void kernels_view_changed(bool shown);
  // A rectangle drawn over the frame: fractions of the frame's width and height, normalised.
  void mask_rect_drawn(QRectF fraction);

 protected:
  void initializeGL() override;
  void paintGL() override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void keyReleaseEvent(QKeyEvent* event) override;

 private:
  void advance();
  void schedule_next();  // arms the pacer for the next queued frame
  void paint_mask_drag(QPainter& painter) const;
  double now_ms() const { return static_cast<double>(clock_.nsecsElapsed()) / 1e6; }
  void give_up_interop(const std::string& why);
  void paint_overlay();
  void set_kernels_shown(bool shown);  // emits kernels_view_changed on a change
  void init_frame_program();
  void upload_current();  // current_ into texture_, by the path the selector picks
  void draw_frame();      // texture_ letterboxed; QPainter when the shaders are unavailable
  void release_gl();      // with the context current

  // GL state of the frame (owned by this widget's context).
  unsigned texture_ = 0;
  QSize texture_size_;
  bool upload_pending_ = false;  // current_ changed since the last upload
  std::unique_ptr<QOpenGLShaderProgram> program_;
  QOpenGLBuffer quad_;
  QOpenGLVertexArrayObject vao_;
  std::unique_ptr<CudaGlUploader> interop_;
  UploadPathSelector selector_;
  UploadPath upload_path_ = UploadPath::host;

  PacedQueue<ShownFrame> queue_;
  ShownFrame current_;
  QTimer pacer_;                 // single shot, armed for the next frame's due time
  bool awaiting_paint_ = false;  // current_ went on screen and was not painted yet
  std::deque<double> paint_ms_;
  std::function<void()> interop_lost_;
  bool overlay_ = false;
  bool kernels_shown_ = false;
  int select_kernels_frames_ = 0;  // overlay frames left that select the Kernels tab
  int64_t painted_ = 0;
  EngineStats stats_;
  PromptSource last_switch_source_ = PromptSource::unknown;
  DeviceMemory memory_;
  QElapsedTimer switch_clock_;
  double switch_latency_ms_ = 0;
  QString shown_prompt_;  // of the last frame shown
  bool recording_ = false;
  bool mask_drawing_ = false;
  std::optional<QPointF> drag_from_;  // where a mask drag started, as frame fractions
  QPointF drag_to_;
  std::unique_ptr<ImGuiLayer> imgui_;
  OverlayReport overlay_report_;
  QElapsedTimer clock_;
  PacingTrace trace_;
  double last_paint_end_ms_ = -1;  // for the trace's swap events
  std::deque<qint64> shown_ms_;    // when the last frames were shown (display FPS)
};

}  // namespace longlive::ui
