#include "cuda_gl_uploader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "longlive/elapsed.h"
#include "longlive/error.h"

#ifdef LONGLIVE_WITH_CUDA
#include <GL/gl.h>
#include <GL/glext.h>
#include <cuda_gl_interop.h>
#include <cuda_runtime_api.h>
#endif

namespace longlive::ui {

#ifdef LONGLIVE_WITH_CUDA
namespace {

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that the host path's CUDA calls do not see it
  throw Error(fmt::format("CUDA-GL interop: {} failed: {}", what, cudaGetErrorString(status)));
}

// The GL entry points we use, from the caller's loader (decltype of the prototypes: no link).
struct GlApi {
  PFNGLGENBUFFERSPROC gen_buffers = nullptr;
  PFNGLDELETEBUFFERSPROC delete_buffers = nullptr;
  PFNGLBINDBUFFERPROC bind_buffer = nullptr;
  PFNGLBUFFERDATAPROC buffer_data = nullptr;
  decltype(&glBindTexture) bind_texture = nullptr;
  decltype(&glTexSubImage2D) tex_sub_image_2d = nullptr;
  decltype(&glPixelStorei) pixel_store = nullptr;
  decltype(&glGetIntegerv) get_integer = nullptr;
  decltype(&glGetError) get_error = nullptr;

  explicit GlApi(const GlProcLoader& loader) {
    load(loader, "glGenBuffers", gen_buffers);
    load(loader, "glDeleteBuffers", delete_buffers);
    load(loader, "glBindBuffer", bind_buffer);
    load(loader, "glBufferData", buffer_data);
    load(loader, "glBindTexture", bind_texture);
    load(loader, "glTexSubImage2D", tex_sub_image_2d);
    load(loader, "glPixelStorei", pixel_store);
    load(loader, "glGetIntegerv", get_integer);
    load(loader, "glGetError", get_error);
  }
  template <typename F>
  static void load(const GlProcLoader& loader, const char* name, F& f) {
    const GlProc proc = loader ? loader(name) : nullptr;
    if (!proc) throw Error(fmt::format("CUDA-GL interop: the GL context has no {}", name));
    f = reinterpret_cast<F>(proc);
  }
  GLint integer(GLenum name) const {
    GLint value = 0;
    get_integer(name, &value);
    return value;
  }
};

// Makes `device` current on this thread for a scope (the UI thread may have another one).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

class Stream {
 public:
  Stream() {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  Event() { check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// A GL buffer registered with CUDA: the one registration per buffer size.
class Registration {
 public:
  explicit Registration(GLuint buffer) {
    check(cudaGraphicsGLRegisterBuffer(&resource_, buffer, cudaGraphicsRegisterFlagsWriteDiscard),
          "cudaGraphicsGLRegisterBuffer");
  }
  ~Registration() { cudaGraphicsUnregisterResource(resource_); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  cudaGraphicsResource_t get() const { return resource_; }

 private:
  cudaGraphicsResource_t resource_ = nullptr;
};

// The buffer mapped for CUDA on a stream; unmapped (which orders GL's later reads after the
// stream's work) by unmap() or, after an error, by the destructor.
class Mapping {
 public:
  Mapping(cudaGraphicsResource_t resource, cudaStream_t stream)
      : resource_(resource), stream_(stream) {
    check(cudaGraphicsMapResources(1, &resource_, stream_), "cudaGraphicsMapResources");
    mapped_ = true;
  }
  ~Mapping() {
    if (mapped_) cudaGraphicsUnmapResources(1, &resource_, stream_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  void* pointer(size_t& bytes) const {
    void* p = nullptr;
    check(cudaGraphicsResourceGetMappedPointer(&p, &bytes, resource_),
          "cudaGraphicsResourceGetMappedPointer");
    return p;
  }
  void unmap() {
    mapped_ = false;
    check(cudaGraphicsUnmapResources(1, &resource_, stream_), "cudaGraphicsUnmapResources");
  }

 private:
  cudaGraphicsResource_t resource_;
  cudaStream_t stream_;
  bool mapped_ = false;
};

}  // namespace

struct CudaGlUploader::Impl {
  explicit Impl(const GlProcLoader& loader) : gl(loader) {}
  ~Impl() {
    // The last copy must finish before its frame's memory goes back to the decoder's pool.
    if (copied) cudaEventSynchronize(copied->get());
    registration.reset();  // unregister before GL deletes the buffer
    if (buffer) gl.delete_buffers(1, &buffer);
  }
  void bind_device(int frame_device);
  void resize(size_t bytes);
  void upload(const DeviceFrame& frame, GLuint texture);
  // After a failure: whatever was queued finishes before the caller may free the frame.
  void settle() {
    if (stream) cudaStreamSynchronize(stream->get());
    cudaGetLastError();
    in_flight = at::Tensor();
  }

  GlApi gl;
  int device = -1;  // the CUDA device of the frames, checked against the GL context's GPUs
  std::string gl_devices_note;  // why the GL context's GPUs are unknown, for error messages
  std::optional<Stream> stream;
  std::optional<Event> copied;  // recorded after each copy
  GLuint buffer = 0;
  size_t buffer_bytes = 0;
  std::unique_ptr<Registration> registration;
  int registrations = 0;
  at::Tensor in_flight;  // the frame of the last copy, held until `copied` has passed
  Times times;
};

void CudaGlUploader::Impl::bind_device(int frame_device) {
  if (device == frame_device) return;
  if (device >= 0)
    throw Error(
        fmt::format("CUDA-GL interop: frames moved from cuda:{} to cuda:{}", device, frame_device));
  // The GPUs that drive the current GL context: interop only works when ours is one of them
  // (not with a software or other-vendor GL, nor with the display on another GPU). A clear "no"
  // stops here; a failed query is only noted, and registering the buffer decides.
  unsigned count = 0;
  int gl_devices[8] = {};
  const cudaError_t status = cudaGLGetDevices(&count, gl_devices, 8, cudaGLDeviceListAll);
  if (status != cudaSuccess) {
    cudaGetLastError();
    gl_devices_note = fmt::format(" (cudaGLGetDevices: {}: is the GL context on this GPU?)",
                                  cudaGetErrorString(status));
  } else {
    const int* begin = gl_devices;
    const int* end = gl_devices + std::min(count, 8u);
    if (count == 0) throw Error("CUDA-GL interop: the GL context does not run on a CUDA GPU");
    if (std::find(begin, end, frame_device) == end)
      throw Error(fmt::format(
          "CUDA-GL interop: the GL context runs on CUDA device {}, the frames are on cuda:{}",
          gl_devices[0], frame_device));
  }
  stream.emplace();
  copied.emplace();
  device = frame_device;
}

void CudaGlUploader::Impl::resize(size_t bytes) {
  registration.reset();
  buffer_bytes = 0;
  if (!buffer) gl.gen_buffers(1, &buffer);
  const GLint bound = gl.integer(GL_PIXEL_UNPACK_BUFFER_BINDING);
  gl.bind_buffer(GL_PIXEL_UNPACK_BUFFER, buffer);
  gl.buffer_data(GL_PIXEL_UNPACK_BUFFER, static_cast<GLsizeiptr>(bytes), nullptr, GL_STREAM_DRAW);
  gl.bind_buffer(GL_PIXEL_UNPACK_BUFFER, static_cast<GLuint>(bound));
  try {
    registration = std::make_unique<Registration>(buffer);
  } catch (const Error& e) {
    throw Error(e.what() + gl_devices_note);
  }
  ++registrations;
  buffer_bytes = bytes;
}

void CudaGlUploader::Impl::upload(const DeviceFrame& frame, GLuint texture) {
  if (!frame.on_device()) throw Error("CUDA-GL interop: the frame is not on a CUDA device");
  const at::Tensor& rgba = frame.rgba;
  if (rgba.dim() != 3 || rgba.size(2) != 4 || rgba.scalar_type() != at::kByte ||
      rgba.stride(2) != 1 || rgba.stride(1) != 4)
    throw Error(fmt::format(
        "CUDA-GL interop: expected an [H, W, 4] uint8 frame of packed pixels, got {} {}",
        fmt::join(rgba.sizes(), "x"), std::string(rgba.dtype().name())));
  const int frame_device = rgba.device().index();
  const DeviceScope scope(frame_device);
  bind_device(frame_device);
  if (in_flight.defined()) {
    check(cudaEventSynchronize(copied->get()), "cudaEventSynchronize");  // long done, normally
    in_flight = at::Tensor();
  }
  const auto height = static_cast<GLsizei>(rgba.size(0));
  const auto width = static_cast<GLsizei>(rgba.size(1));
  const size_t row_bytes = static_cast<size_t>(width) * 4;
  const size_t bytes = row_bytes * static_cast<size_t>(height);
  if (bytes != buffer_bytes) resize(bytes);

  using Clock = std::chrono::steady_clock;
  const Clock::time_point map_start = Clock::now();
  Mapping mapping(registration->get(), stream->get());
  times.map_ms = ms_since(map_start);
  check(cudaStreamWaitEvent(stream->get(), frame.ready.get(), 0), "cudaStreamWaitEvent");
  size_t mapped_bytes = 0;
  void* target = mapping.pointer(mapped_bytes);
  if (mapped_bytes < bytes)
    throw Error(fmt::format("CUDA-GL interop: the mapped buffer has {} bytes, the frame {}",
                            mapped_bytes, bytes));
  check(cudaMemcpy2DAsync(target, row_bytes, rgba.data_ptr(), static_cast<size_t>(rgba.stride(0)),
                          row_bytes, static_cast<size_t>(height), cudaMemcpyDeviceToDevice,
                          stream->get()),
        "cudaMemcpy2DAsync");
  const Clock::time_point unmap_start = Clock::now();
  mapping.unmap();  // GL work issued from here on runs after the copy
  times.unmap_ms = ms_since(unmap_start);
  check(cudaEventRecord(copied->get(), stream->get()), "cudaEventRecord");
  in_flight = rgba;

  // Texture from the buffer, on the GPU: offset 0 of the bound pixel-unpack buffer.
  while (gl.get_error() != GL_NO_ERROR) {
  }  // errors of earlier GL calls are not ours
  const GLint bound_buffer = gl.integer(GL_PIXEL_UNPACK_BUFFER_BINDING);
  const GLint bound_texture = gl.integer(GL_TEXTURE_BINDING_2D);
  const GLint row_length = gl.integer(GL_UNPACK_ROW_LENGTH);
  const GLint alignment = gl.integer(GL_UNPACK_ALIGNMENT);
  gl.bind_buffer(GL_PIXEL_UNPACK_BUFFER, buffer);
  gl.bind_texture(GL_TEXTURE_2D, texture);
  gl.pixel_store(GL_UNPACK_ROW_LENGTH, 0);
  gl.pixel_store(GL_UNPACK_ALIGNMENT, 4);
  gl.tex_sub_image_2d(GL_TEXTURE_2D, 0, 0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
  const GLenum error = gl.get_error();
  gl.pixel_store(GL_UNPACK_ROW_LENGTH, row_length);
  gl.pixel_store(GL_UNPACK_ALIGNMENT, alignment);
  gl.bind_texture(GL_TEXTURE_2D, static_cast<GLuint>(bound_texture));
  gl.bind_buffer(GL_PIXEL_UNPACK_BUFFER, static_cast<GLuint>(bound_buffer));
  if (error != GL_NO_ERROR)
    throw Error(fmt::format(
        "CUDA-GL interop: glTexSubImage2D from the pixel buffer failed (GL error 0x{:x}; is "
        "texture {} an RGBA8 texture of at least {}x{}?)",
        error, texture, width, height));
}

bool CudaGlUploader::available_in_build() { return true; }
CudaGlUploader::CudaGlUploader(const GlProcLoader& loader)
    : impl_(std::make_unique<Impl>(loader)) {}
void CudaGlUploader::upload(const DeviceFrame& frame, unsigned texture) {
  try {
    impl_->upload(frame, texture);
  } catch (...) {
    impl_->settle();
    throw;
  }
}
unsigned CudaGlUploader::pixel_buffer() const { return impl_->buffer; }
int CudaGlUploader::registrations() const { return impl_->registrations; }
CudaGlUploader::Times CudaGlUploader::last_times() const { return impl_->times; }

#else  // no CUDA in this build: the view always uploads host frames

struct CudaGlUploader::Impl {};
bool CudaGlUploader::available_in_build() { return false; }
CudaGlUploader::CudaGlUploader(const GlProcLoader&) : impl_(std::make_unique<Impl>()) {}
void CudaGlUploader::upload(const DeviceFrame&, unsigned) {
  throw Error("CUDA-GL interop: this build has no CUDA");
}
unsigned CudaGlUploader::pixel_buffer() const { return 0; }
int CudaGlUploader::registrations() const { return 0; }
CudaGlUploader::Times CudaGlUploader::last_times() const { return {}; }

#endif

CudaGlUploader::~CudaGlUploader() = default;

}  // namespace longlive::ui
