#pragma once
// Dear ImGui inside a QOpenGLWidget: one ImGui context per widget, Qt's mouse/wheel/key/text
// events translated into ImGui's input state, and the draw lists rendered with Dear ImGui's
// OpenGL 3 backend (shipped in Debian's libimgui) on the widget's GL context.
//
// Use from the widget: initialize_gl() in initializeGL(), shutdown_gl() before the context goes
// away (QOpenGLContext::aboutToBeDestroyed), and new_frame() ... render() inside paintGL().
#include <QElapsedTimer>
#include <QPointF>
#include <QSize>
#include <Qt>

class QKeyEvent;
struct ImGuiContext;

namespace longlive::ui {

class ImGuiLayer {
 public:
  ImGuiLayer();
  ~ImGuiLayer();
  ImGuiLayer(const ImGuiLayer&) = delete;
  ImGuiLayer& operator=(const ImGuiLayer&) = delete;

  // With the widget's context current. Returns false (and the layer stays off) when the GL
  // backend cannot start, e.g. a context older than OpenGL 3.0.
  bool initialize_gl();
  // Draws one throw-away frame into the current framebuffer (the next paint clears it): the first
  // overlay frame builds ImGui's GL objects and font texture, and a software rasteriser
  // (llvmpipe) compiles its shaders on the first draw, ~40 ms of the UI thread. Paid when the
  // view's GL starts rather than when F1 is first pressed mid-stream.
  void warm_up(QSize size);
  void shutdown_gl();
  bool ready() const { return gl_ready_; }

  // Starts a frame of `size` logical pixels at `device_pixel_ratio`; ImGui calls follow.
  void new_frame(QSize size, double device_pixel_ratio);
  // Renders the frame into the bound framebuffer (the backend saves and restores GL state).
  void render();

  // Input, in widget coordinates. Each returns whether ImGui wants that input (the widget then
  // keeps the event for itself).
  bool mouse_move(QPointF position);
  bool mouse_button(Qt::MouseButton button, bool down);
  bool wheel(QPoint angle_delta);
  bool key(const QKeyEvent& event, bool down);
  void focus(bool in);

  // Statistics of the last rendered frame (tests: the overlay really drew something).
  int last_vertex_count() const { return vertices_; }
  int last_draw_lists() const { return draw_lists_; }

 private:
  void make_current() const;

  ImGuiContext* context_ = nullptr;
  bool gl_ready_ = false;
  QElapsedTimer clock_;
  int vertices_ = 0;
  int draw_lists_ = 0;
};

}  // namespace longlive::ui
