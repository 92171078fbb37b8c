#include "video_view.h"
#include "longlive/kernel_profiler.h"

#include <QFile>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QOpenGLFunctions>
#include <QPainter>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

#include "cuda_gl_uploader.h"
#include "imgui_layer.h"
#include "longlive/log.h"

namespace longlive::ui {

namespace {
constexpr int kVideoFps = 16;
// Paint durations kept for paint_ms().
constexpr size_t kPaintSamples = 256;

// A quad over the viewport as a triangle strip: x, y, u, v (v = 0 is the frame's top row).
constexpr float kQuad[] = {-1, -1, 0, 1, 1, -1, 1, 1, -1, 1, 0, 0, 1, 1, 1, 0};

// Points the program's attributes into the bound quad buffer (or switches them off again).
void set_quad_attributes(QOpenGLShaderProgram& program, bool on) {
  for (const char* name : {"position", "texcoord"}) {
    if (!on) {
      program.disableAttributeArray(name);
      continue;
    }
    program.enableAttributeArray(name);
    program.setAttributeBuffer(name, GL_FLOAT, name[0] == 'p' ? 0 : 2 * sizeof(float), 2,
                               4 * sizeof(float));
  }
}

// Letterboxed rectangle of a frame in the widget (aspect kept, centred).
QRect letterbox(QSize frame, QSize widget) {
  const QSize scaled = frame.scaled(widget, Qt::KeepAspectRatio);
  return {QPoint((widget.width() - scaled.width()) / 2, (widget.height() - scaled.height()) / 2),
          scaled};
}
}  // namespace

VideoView::VideoView(QWidget* parent)
    : QOpenGLWidget(parent),
      selector_(CudaGlUploader::available_in_build()),
      imgui_(std::make_unique<ImGuiLayer>()) {
  setMinimumSize(320, 240);
  setFocusPolicy(Qt::ClickFocus);  // keys reach the overlay after a click into the view
  pacer_.setTimerType(Qt::PreciseTimer);
  pacer_.setSingleShot(true);
  connect(&pacer_, &QTimer::timeout, this, &VideoView::schedule_next);
  connect(this, &QOpenGLWidget::frameSwapped, this, [this] {
    if (last_paint_end_ms_ < 0) return;
    const double now = now_ms();
    trace_.add({.ms = now, .kind = PacingTrace::Kind::swapped, .value = now - last_paint_end_ms_});
  });
  clock_.start();
}

VideoView::~VideoView() {
  // The ImGui GL objects belong to this widget's context: release them while it exists, and
  // before ~QOpenGLWidget destroys it (its aboutToBeDestroyed would reach a half-gone view).
  if (context()) {
    disconnect(context(), nullptr, this, nullptr);
    makeCurrent();
    release_gl();
    doneCurrent();
  }
}

void VideoView::release_gl() {
  imgui_->shutdown_gl();
  interop_.reset();  // unregisters its buffer from CUDA, then deletes it
  if (texture_) context()->functions()->glDeleteTextures(1, &texture_);
  texture_ = 0;
  texture_size_ = QSize();
  upload_pending_ = current_.size.isValid();  // a new context uploads the frame again
  program_.reset();
  quad_.destroy();
  vao_.destroy();
}

QString VideoView::upload_status() const {
  const std::string_view label = upload_path_label(upload_path_);
  return "upload: " + QString::fromUtf8(label.data(), static_cast<qsizetype>(label.size()));
}

void VideoView::enqueue(ShownFrame frame) {
  // A new prompt's first frame while a switch waits for it: the old prompt's queued frames would
  // only delay it.
  const bool skip_queued = frame.first_of_prompt && switch_clock_.isValid();
  const double now = now_ms();
  trace_.add({.ms = now,
              .kind = PacingTrace::Kind::arrival,
              .index = frame.index,
              .value = static_cast<double>(queue_.size()),
              .skip = skip_queued});
  queue_.push(std::move(frame), now, skip_queued);
  schedule_next();
}

void VideoView::schedule_next() {
  const std::optional<double> wait = queue_.wait_ms(now_ms());
  if (!wait) return;
  if (*wait <= 0) {  // due (or the queue ran dry and this frame is late): show it now
    advance();
    schedule_next();  // arms the pacer for the one after (it waits for this one's paint)
    return;
  }
  pacer_.start(static_cast<int>(std::ceil(*wait)));
}

void VideoView::clear() {
  queue_.clear();
  current_ = ShownFrame{};
  upload_pending_ = false;
  awaiting_paint_ = false;
  pacer_.stop();
  update();
}

void VideoView::set_stats(const EngineStats& stats) {
  last_switch_source_ = next_prompt_source(stats_, stats, last_switch_source_);
  stats_ = stats;
}

void VideoView::set_overlay_visible(bool visible) {
  overlay_ = visible;
  setMouseTracking(visible);  // hover (plot tooltips) needs moves without a button held
  if (!visible) set_kernels_shown(false);
  update();
}

void VideoView::set_kernels_shown(bool shown) {
  if (shown == kernels_shown_) return;
  kernels_shown_ = shown;
  emit kernels_view_changed(shown);
}

int VideoView::overlay_vertices() const { return imgui_->last_vertex_count(); }

double VideoView::display_fps() const {
  if (shown_ms_.size() < 2) return 0;
  const double span_s = static_cast<double>(shown_ms_.back() - shown_ms_.front()) / 1000.0;
  return span_s > 0 ? static_cast<double>(shown_ms_.size() - 1) / span_s : 0;
}

void VideoView::advance() {
  if (queue_.size() == 0) return;
  const double now = now_ms();
  current_ = queue_.pop(now);
  trace_.add({.ms = now, .kind = PacingTrace::Kind::shown, .index = current_.index});
  // After interop gave up, device frames only hold GPU memory: let them go.
  if (!selector_.wants_device_frames()) current_.device = DeviceFrame{};
  upload_pending_ = true;
  // A switch's latency ends at the new prompt's first frame on screen. Under load a full queue
  // may drop that frame (the oldest go first): then the first frame of another prompt shown ends
  // it.
  const bool new_prompt = current_.first_of_prompt || current_.prompt != shown_prompt_;
  shown_prompt_ = current_.prompt;
  if (new_prompt && switch_clock_.isValid()) {
    switch_latency_ms_ = static_cast<double>(switch_clock_.nsecsElapsed()) / 1e6;
    switch_clock_.invalidate();
  }
  awaiting_paint_ = true;
  shown_ms_.push_back(clock_.elapsed());
  while (shown_ms_.size() > 3 * kVideoFps) shown_ms_.pop_front();
  update();
}

void VideoView::give_up_interop(const std::string& why) {
  const bool had = selector_.wants_device_frames();
  selector_.give_up_interop(why);  // logged once; host uploads from now on
  if (had && interop_lost_) interop_lost_();
}

void VideoView::initializeGL() {
  if (imgui_->initialize_gl()) imgui_->warm_up(size());
  init_frame_program();
  // A widget moved to another top-level window gets a new context: release ours first.
  connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
    makeCurrent();
    release_gl();
    doneCurrent();
  });
}

void VideoView::init_frame_program() {
  const bool es = context()->isOpenGLES();
  const QByteArray header = es ? "#version 100\nprecision mediump float;\n" : "#version 120\n";
  auto source = [&](const char* path) {
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? header + file.readAll() : QByteArray();
  };
  auto program = std::make_unique<QOpenGLShaderProgram>();
  if (!program->addShaderFromSourceCode(QOpenGLShader::Vertex, source(":/shaders/video.vert")) ||
      !program->addShaderFromSourceCode(QOpenGLShader::Fragment, source(":/shaders/video.frag")) ||
      !program->link()) {
    // Never a black view: without the shaders, QPainter draws the host frame.
    log::warn("video view: the frame shaders do not build ({}); drawing with QPainter",
              program->log().toStdString());
    give_up_interop("no frame shaders: frames are drawn from the host");
    return;
  }
  program_ = std::move(program);
  program_->bind();
  program_->setUniformValue("frame", 0);
  program_->release();
  quad_.create();
  // Where VAOs exist (core profiles need one) the attribute layout is recorded once; without
  // them draw_frame() sets it per draw, so no attribute state leaks into QPainter or ImGui.
  if (vao_.create()) {
    const QOpenGLVertexArrayObject::Binder bind_vao(&vao_);
    quad_.bind();
    set_quad_attributes(*program_, true);
  }
  quad_.bind();
  quad_.allocate(kQuad, sizeof(kQuad));
  quad_.release();
}

void VideoView::upload_current() {
  upload_pending_ = false;
  const QImage& image = current_.image;
  const QSize size = current_.size;
  if (!size.isValid() || !program_) return;
  QOpenGLFunctions* f = context()->functions();
  if (!texture_ || texture_size_ != size) {
    if (!texture_) {
      f->glGenTextures(1, &texture_);
      f->glBindTexture(GL_TEXTURE_2D, texture_);
      f->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
      f->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
      f->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
      f->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    }
    f->glBindTexture(GL_TEXTURE_2D, texture_);
    f->glTexImage2D(GL_TEXTURE_2D, 0, context()->isOpenGLES() ? GL_RGBA : GL_RGBA8, size.width(),
                    size.height(), 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
    texture_size_ = size;
  }
  upload_path_ = selector_.choose(current_.device);
  if (upload_path_ == UploadPath::cuda_gl) {
    try {
      if (!interop_)
        interop_ = std::make_unique<CudaGlUploader>(
            [context = context()](const char* name) { return context->getProcAddress(name); });
      interop_->upload(current_.device, texture_);
      current_.device = DeviceFrame{};  // the uploader holds it until its copy is done
      const CudaGlUploader::Times times = interop_->last_times();
      trace_.add({.ms = now_ms(),
                  .kind = PacingTrace::Kind::interop_map,
                  .index = current_.index,
                  .value = times.map_ms});
      trace_.add({.ms = now_ms(),
                  .kind = PacingTrace::Kind::interop_unmap,
                  .index = current_.index,
                  .value = times.unmap_ms});
      return;
    } catch (const std::exception& e) {
      give_up_interop(e.what());
      interop_.reset();
      upload_path_ = UploadPath::host;
    }
  }
  // A frame only on the GPU that interop could not take: the texture keeps the last frame until
  // the engine's host copies (turned back on by the window) arrive.
  if (image.isNull()) return;
  // Host path: RGBA8888 rows are 4-byte aligned and packed (bytesPerLine == 4 * width).
  f->glBindTexture(GL_TEXTURE_2D, texture_);
  f->glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
  f->glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, image.width(), image.height(), GL_RGBA,
                     GL_UNSIGNED_BYTE, image.constBits());
  f->glBindTexture(GL_TEXTURE_2D, 0);
}

void VideoView::draw_frame() {
  const QRect target = frame_rect();
  if (!program_ || !texture_) {
    if (current_.image.isNull()) return;  // a device frame without shaders: nothing to draw
    QPainter p(this);
    p.setRenderHint(QPainter::SmoothPixmapTransform);
    p.drawImage(target, current_.image);
    return;
  }
  QOpenGLFunctions* f = context()->functions();
  const qreal dpr = devicePixelRatioF();
  const int fb_height = qRound(height() * dpr);
  // GL's viewport counts rows from the bottom.
  f->glViewport(qRound(target.x() * dpr), fb_height - qRound((target.y() + target.height()) * dpr),
                qRound(target.width() * dpr), qRound(target.height() * dpr));
  f->glActiveTexture(GL_TEXTURE0);
  f->glBindTexture(GL_TEXTURE_2D, texture_);
  program_->bind();
  {
    const QOpenGLVertexArrayObject::Binder bind_vao(&vao_);
    if (!vao_.isCreated()) {  // no VAO: the attribute layout is set per draw
      quad_.bind();
      set_quad_attributes(*program_, true);
    }
    f->glDrawArrays(GL_TRIANGLE_STRIP, 0, 4);
    if (!vao_.isCreated()) {
      set_quad_attributes(*program_, false);
      quad_.release();
    }
  }
  program_->release();
  f->glBindTexture(GL_TEXTURE_2D, 0);
  f->glViewport(0, 0, qRound(width() * dpr), fb_height);
}

void VideoView::paintGL() {
  QElapsedTimer paint_clock;
  paint_clock.start();
  QOpenGLFunctions* f = context()->functions();
  f->glClearColor(0, 0, 0, 1);
  f->glClear(GL_COLOR_BUFFER_BIT);
  if (current_.size.isValid()) {
    if (upload_pending_) {
      QElapsedTimer upload_clock;
      upload_clock.start();
      upload_current();
      trace_.add({.ms = now_ms(),
                  .kind = PacingTrace::Kind::upload,
                  .index = current_.index,
                  .value = static_cast<double>(upload_clock.nsecsElapsed()) / 1e6});
    }
    draw_frame();
    ++painted_;
    QPainter p(this);  // after the raw GL: the painter sets up its own state
    p.setPen(Qt::white);
    p.drawText(rect().adjusted(8, 0, -8, -6), Qt::AlignBottom | Qt::AlignLeft,
               QString("frame %1  |  %2  |  %3")
                   .arg(current_.index)
                   .arg(upload_status(), current_.prompt.left(80)));
    paint_mask_drag(p);
    emit frame_shown(current_.index);
  }  // the painter ends here: ImGui draws with raw GL on top
  if (overlay_) paint_overlay();
  paint_ms_.push_back(static_cast<double>(paint_clock.nsecsElapsed()) / 1e6);
  last_paint_end_ms_ = now_ms();
  trace_.add({.ms = last_paint_end_ms_ - paint_ms_.back(),
              .kind = PacingTrace::Kind::paint,
              .value = paint_ms_.back()});
  while (paint_ms_.size() > kPaintSamples) paint_ms_.pop_front();
  if (awaiting_paint_ && current_.size.isValid()) {
    awaiting_paint_ = false;  // the next frame may come: the pacer looks again, after this paint
    queue_.painted();
    QMetaObject::invokeMethod(this, &VideoView::schedule_next, Qt::QueuedConnection);
  }
}

void VideoView::paint_overlay() {
  if (!imgui_->ready() && !imgui_->initialize_gl()) return;
  imgui_->new_frame(size(), devicePixelRatioF());
  overlay_report_ = draw_debug_overlay({.stats = stats_,
                                        .last_switch_source = last_switch_source_,
                                        .switch_latency_ms = switch_latency_ms_,
                                        .display_fps = display_fps(),
                                        .display_dropped = frames_dropped(),
                                        .frame_index = current_.index,
                                        .recording = recording_,
                                        .memory_gib = memory_.allocated_gib,
                                        .peak_memory_gib = memory_.peak_allocated_gib,
                                        .upload = upload_status().toStdString(),
                                        .upload_note = selector_.why_not(),
                                        .kernels_note = KernelProfiler::unavailable_reason(),
                                        .select_kernels = select_kernels_frames_ > 0});
  if (select_kernels_frames_ > 0) {
    --select_kernels_frames_;
    update();  // the tab shows from the next overlay frame: paint it (and one after the flag)
  }
  imgui_->render();
  set_kernels_shown(overlay_report_.kernels_view);
}

void VideoView::set_mask_drawing(bool on) {
  mask_drawing_ = on;
  drag_from_.reset();
  if (on)
    setCursor(Qt::CrossCursor);
  else
    unsetCursor();
  update();
}

QRect VideoView::frame_rect() const {
  return letterbox(current_.size.isValid() ? current_.size : size(), size());
}

QPointF VideoView::frame_fraction(QPointF widget_pos) const {
  const QRect frame = frame_rect();
  if (frame.isEmpty()) return {};
  return {std::clamp((widget_pos.x() - frame.x()) / frame.width(), 0.0, 1.0),
          std::clamp((widget_pos.y() - frame.y()) / frame.height(), 0.0, 1.0)};
}

void VideoView::paint_mask_drag(QPainter& painter) const {
  if (!drag_from_) return;
  const QRect frame = frame_rect();
  const QRectF fraction = QRectF(*drag_from_, drag_to_).normalized();
  const QRectF shown(frame.x() + fraction.x() * frame.width(),
                     frame.y() + fraction.y() * frame.height(), fraction.width() * frame.width(),
                     fraction.height() * frame.height());
  painter.setPen(QPen(Qt::white, 2, Qt::DashLine));
  painter.setBrush(QColor(255, 255, 255, 60));  // inside is what will be generated
  painter.drawRect(shown);
}

// While a mask is drawn, a left drag is the rectangle; otherwise input goes to ImGui only while
// the overlay is shown (the view itself has no other use for it).
void VideoView::mouseMoveEvent(QMouseEvent* event) {
  if (mask_drawing_ && drag_from_) {
    drag_to_ = frame_fraction(event->position());
    update();
    return;
  }
  if (!overlay_) return QOpenGLWidget::mouseMoveEvent(event);
  imgui_->mouse_move(event->position());
  update();
}

void VideoView::mousePressEvent(QMouseEvent* event) {
  if (mask_drawing_ && event->button() == Qt::LeftButton && current_.size.isValid()) {
    drag_from_ = frame_fraction(event->position());
    drag_to_ = *drag_from_;
    update();
    return;
  }
  if (!overlay_) return QOpenGLWidget::mousePressEvent(event);
  imgui_->mouse_move(event->position());
  imgui_->mouse_button(event->button(), true);
  update();
}

void VideoView::mouseReleaseEvent(QMouseEvent* event) {
  if (mask_drawing_ && drag_from_ && event->button() == Qt::LeftButton) {
    drag_to_ = frame_fraction(event->position());
    const QRectF fraction = QRectF(*drag_from_, drag_to_).normalized();
    drag_from_.reset();
    update();
    // A click without a drag draws nothing: the mode stays on for the next try.
    if (fraction.width() > 0 && fraction.height() > 0) emit mask_rect_drawn(fraction);
    return;
  }
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
