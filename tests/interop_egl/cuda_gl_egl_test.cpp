// CUDA-GL interop in a real GL context without a display: a headless desktop-GL context on an EGL
// device (EGL_EXT_platform_device), the one that is CUDA device 0 (EGL_NV_device_cuda). Device
// frames copied through the uploader's registered pixel buffer must read back identical from
// the buffer (glGetBufferSubData) and the texture (glGetTexImage), and decoded engine frames
// must reach the texture as the bytes of their host copy. Skips (never fails) where EGL, an EGL
// device of the CUDA GPU, or CUDA is missing; the GPU box runs it.
#include <gtest/gtest.h>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GL/gl.h>
#include <GL/glext.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda_gl_uploader.h"
#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/taehv.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#ifndef EGL_CUDA_DEVICE_NV
#define EGL_CUDA_DEVICE_NV 0x323A
#endif

namespace longlive::ui {
namespace {

template <typename F>
F egl_proc(const char* name) {
  return reinterpret_cast<F>(eglGetProcAddress(name));
}

GlProc gl_loader(const char* name) { return reinterpret_cast<GlProc>(eglGetProcAddress(name)); }

// A desktop-GL context on an EGL device, current on this thread while the object lives.
class HeadlessGl {
 public:
  // `cuda_device` >= 0: only the EGL device that is that CUDA device will do; -1: any device.
  explicit HeadlessGl(int cuda_device) {
    const char* client = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    if (!client || !std::strstr(client, "EGL_EXT_platform_device")) {
      why_not_ = "EGL has no EGL_EXT_platform_device (no EGL, or no vendor library for it)";
      return;
    }
    const auto query_devices = egl_proc<PFNEGLQUERYDEVICESEXTPROC>("eglQueryDevicesEXT");
    const auto device_attrib = egl_proc<PFNEGLQUERYDEVICEATTRIBEXTPROC>("eglQueryDeviceAttribEXT");
    const auto platform_display =
        egl_proc<PFNEGLGETPLATFORMDISPLAYEXTPROC>("eglGetPlatformDisplayEXT");
    EGLDeviceEXT devices[16];
    EGLint count = 0;
    if (!query_devices || !platform_display || !query_devices(16, devices, &count) || count == 0) {
      why_not_ = "no EGL device";
      return;
    }
    EGLDeviceEXT chosen = nullptr;
    for (EGLint i = 0; i < count && !chosen; ++i) {
      EGLAttrib cuda = -1;
      const bool has_cuda = device_attrib && device_attrib(devices[i], EGL_CUDA_DEVICE_NV, &cuda);
      if (cuda_device < 0 || (has_cuda && cuda == cuda_device)) chosen = devices[i];
    }
    if (!chosen) {
      why_not_ = "no EGL device is CUDA device " + std::to_string(cuda_device) +
                 " (NVIDIA's EGL vendor library not found? see __EGL_VENDOR_LIBRARY_FILENAMES)";
      return;
    }
    display_ = platform_display(EGL_PLATFORM_DEVICE_EXT, chosen, nullptr);
    EGLint major = 0, minor = 0;
    if (display_ == EGL_NO_DISPLAY || !eglInitialize(display_, &major, &minor)) {
      why_not_ = "eglInitialize failed on the EGL device";
      display_ = EGL_NO_DISPLAY;
      return;
    }
    const EGLint config_attribs[] = {EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE,
                                     EGL_OPENGL_BIT, EGL_NONE};
    EGLConfig config = nullptr;
    EGLint configs = 0;
    if (!eglBindAPI(EGL_OPENGL_API) ||
        !eglChooseConfig(display_, config_attribs, &config, 1, &configs) || configs == 0) {
      why_not_ = "no desktop-GL pbuffer config on the EGL device";
      return;
    }
    context_ = eglCreateContext(display_, config, EGL_NO_CONTEXT, nullptr);
    const EGLint pbuffer_attribs[] = {EGL_WIDTH, 1, EGL_HEIGHT, 1, EGL_NONE};
    surface_ = eglCreatePbufferSurface(display_, config, pbuffer_attribs);
    if (context_ == EGL_NO_CONTEXT || surface_ == EGL_NO_SURFACE ||
        !eglMakeCurrent(display_, surface_, surface_, context_)) {
      why_not_ = "could not make a GL context current on the EGL device";
      return;
    }
    const auto get_string = egl_proc<const GLubyte* (*)(GLenum)>("glGetString");
    if (get_string && get_string(GL_RENDERER))
      renderer_ = reinterpret_cast<const char*>(get_string(GL_RENDERER));
    ready_ = true;
  }
  ~HeadlessGl() {
    if (display_ == EGL_NO_DISPLAY) return;
    eglMakeCurrent(display_, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
    if (surface_ != EGL_NO_SURFACE) eglDestroySurface(display_, surface_);
    if (context_ != EGL_NO_CONTEXT) eglDestroyContext(display_, context_);
    eglTerminate(display_);
  }
  HeadlessGl(const HeadlessGl&) = delete;
  HeadlessGl& operator=(const HeadlessGl&) = delete;

  bool ready() const { return ready_; }
  const std::string& why_not() const { return why_not_; }
  const std::string& renderer() const { return renderer_; }

 private:
  EGLDisplay display_ = EGL_NO_DISPLAY;
  EGLContext context_ = EGL_NO_CONTEXT;
  EGLSurface surface_ = EGL_NO_SURFACE;
  bool ready_ = false;
  std::string why_not_, renderer_;
};

// The GL calls the test itself makes, loaded like the uploader's.
struct TestGl {
  decltype(&glGenTextures) gen_textures = egl_proc<decltype(gen_textures)>("glGenTextures");
  decltype(&glDeleteTextures) delete_textures =
      egl_proc<decltype(delete_textures)>("glDeleteTextures");
  decltype(&glBindTexture) bind_texture = egl_proc<decltype(bind_texture)>("glBindTexture");
  decltype(&glTexImage2D) tex_image = egl_proc<decltype(tex_image)>("glTexImage2D");
  decltype(&glGetTexImage) get_tex_image = egl_proc<decltype(get_tex_image)>("glGetTexImage");
  decltype(&glPixelStorei) pixel_store = egl_proc<decltype(pixel_store)>("glPixelStorei");
  PFNGLBINDBUFFERPROC bind_buffer = egl_proc<PFNGLBINDBUFFERPROC>("glBindBuffer");
  PFNGLGETBUFFERSUBDATAPROC get_buffer_data =
      egl_proc<PFNGLGETBUFFERSUBDATAPROC>("glGetBufferSubData");
  decltype(&glFinish) finish = egl_proc<decltype(finish)>("glFinish");

  bool loaded() const {
    return gen_textures && delete_textures && bind_texture && tex_image && get_tex_image &&
           pixel_store && bind_buffer && get_buffer_data && finish;
  }
  GLuint texture(int64_t height, int64_t width) const {
    GLuint t = 0;
    gen_textures(1, &t);
    bind_texture(GL_TEXTURE_2D, t);
    tex_image(GL_TEXTURE_2D, 0, GL_RGBA8, static_cast<GLsizei>(width), static_cast<GLsizei>(height),
              0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
    bind_texture(GL_TEXTURE_2D, 0);
    return t;
  }
  at::Tensor read_texture(GLuint t, int64_t height, int64_t width) const {
    at::Tensor out = at::zeros({height, width, 4}, at::kByte);
    pixel_store(GL_PACK_ALIGNMENT, 1);
    bind_texture(GL_TEXTURE_2D, t);
    get_tex_image(GL_TEXTURE_2D, 0, GL_RGBA, GL_UNSIGNED_BYTE, out.data_ptr());
    bind_texture(GL_TEXTURE_2D, 0);
    return out;
  }
  at::Tensor read_buffer(GLuint buffer, int64_t height, int64_t width) const {
    at::Tensor out = at::zeros({height, width, 4}, at::kByte);
    bind_buffer(GL_PIXEL_UNPACK_BUFFER, buffer);
    get_buffer_data(GL_PIXEL_UNPACK_BUFFER, 0, out.numel(), out.data_ptr());
    bind_buffer(GL_PIXEL_UNPACK_BUFFER, 0);
    return out;
  }
};

// Any EGL device will do here (Mesa's software one too): the uploader loads its functions from a
// real context and refuses a frame that is not on the GPU, without touching GL state.
TEST(CudaGlEgl, UploaderLoadsFromARealContextAndRefusesHostFrames) {
  const HeadlessGl gl(-1);
  if (!gl.ready()) GTEST_SKIP() << "no headless GL: " << gl.why_not();
  std::printf("GL renderer: %s\n", gl.renderer().c_str());
  CudaGlUploader uploader(gl_loader);
  const DeviceFrame host{at::zeros({8, 8, 4}, at::kByte), {}};
  EXPECT_THROW(uploader.upload(host, 1), Error);
  EXPECT_EQ(uploader.registrations(), 0);
}

#ifdef LONGLIVE_WITH_CUDA
// A device frame whose event is recorded on the current stream after `rgba` was made.
DeviceFrame device_frame(const at::Tensor& rgba) {
  auto event = std::make_shared<at::cuda::CUDAEvent>();
  event->record();
  return {rgba, std::shared_ptr<CUevent_st>(event, event->event())};
}
#endif

class CudaGlEglGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: CUDA-GL interop is tested on the GPU box";
#ifndef LONGLIVE_WITH_CUDA
    GTEST_SKIP() << "built without CUDA";
#endif
    gl_ = std::make_unique<HeadlessGl>(0);
    if (!gl_->ready()) GTEST_SKIP() << "no headless GL on CUDA device 0: " << gl_->why_not();
    std::printf("GL renderer: %s\n", gl_->renderer().c_str());
    ASSERT_TRUE(calls_.loaded()) << "the EGL context lacks a GL function the test reads with";
  }
  void TearDown() override { gl_.reset(); }

  std::unique_ptr<HeadlessGl> gl_;
  TestGl calls_;
};

TEST_F(CudaGlEglGpu, DeviceFramesReadBackIdenticalFromBufferAndTexture) {
#ifdef LONGLIVE_WITH_CUDA
  const at::Device cuda(at::kCUDA, 0);
  const auto bytes = at::TensorOptions().dtype(at::kByte).device(cuda);
  CudaGlUploader uploader(gl_loader);
  at::manual_seed(5);
  // Odd sizes, and rows with a pitch wider than the frame (a crop of a wider image), so the 2-D
  // copy's pitches matter; then a second size, which registers a new buffer once.
  struct Case {
    int64_t height, width, pad;
  };
  int expected_registrations = 0;
  int64_t last_size = -1;
  for (const Case c : {Case{23, 37, 5}, Case{23, 37, 0}, Case{23, 37, 3}, Case{48, 64, 0}}) {
    const at::Tensor wide = at::randint(0, 256, {c.height, c.width + c.pad, 4}, bytes);
    const at::Tensor rgba = wide.slice(1, 0, c.width);
    const GLuint texture = calls_.texture(c.height, c.width);
    uploader.upload(device_frame(rgba), texture);
    expected_registrations += c.height * c.width != last_size;
    last_size = c.height * c.width;
    calls_.finish();
    const at::Tensor expected = rgba.cpu();
    EXPECT_TRUE(calls_.read_buffer(uploader.pixel_buffer(), c.height, c.width).equal(expected))
        << c.height << "x" << c.width << " pad " << c.pad << ": pixel buffer differs";
    EXPECT_TRUE(calls_.read_texture(texture, c.height, c.width).equal(expected))
        << c.height << "x" << c.width << " pad " << c.pad << ": texture differs";
    EXPECT_EQ(uploader.registrations(), expected_registrations) << "registered once per size";
    calls_.delete_textures(1, &texture);
  }
  EXPECT_EQ(uploader.registrations(), 2);
#endif
}

// The engine side and the view side together: the AsyncDecoder's device frames (made on its
// decode stream) reach the texture as exactly the bytes of its host frames.
TEST_F(CudaGlEglGpu, DecodedDeviceFramesReachTheTextureAsTheHostBytes) {
#ifdef LONGLIVE_WITH_CUDA
  const at::Device cuda(at::kCUDA, 0);
  AsyncDecoder decoder(make_taehv_decoder(make_random_taehv_weights(17), {cuda, at::kFloat}), cuda);
  CudaGlUploader uploader(gl_loader);
  at::manual_seed(3);
  for (int block = 0; block < 2; ++block) {
    decoder.submit(at::randn({1, 2, 16, 4, 6}, at::TensorOptions().device(cuda)) * 2);
    const DecodedBlock decoded = decoder.take_block();
    ASSERT_TRUE(decoded.device.defined());
    const int64_t height = decoded.host.size(1), width = decoded.host.size(2);
    const GLuint texture = calls_.texture(height, width);
    for (int64_t f = 0; f < decoded.host.size(0); ++f) {
      uploader.upload({decoded.device[f], decoded.ready}, texture);
      EXPECT_TRUE(calls_.read_texture(texture, height, width).equal(decoded.host[f]))
          << "block " << block << " frame " << f;
    }
    calls_.delete_textures(1, &texture);
  }
  EXPECT_EQ(uploader.registrations(), 1);
#endif
}

}  // namespace
}  // namespace longlive::ui
