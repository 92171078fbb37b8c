#pragma once
// Device frames to a GL texture without a host round trip (DESIGN §3): a pixel-unpack buffer is
// registered with CUDA once (again only when the frame size changes); each frame is copied into
// it on the device (cudaMemcpy2DAsync on our stream, after the frame's decode event), then
// glTexSubImage2D reads the buffer into the texture on the GPU.
//
// Qt-free and context-agnostic: GL functions come from the caller's loader
// (QOpenGLContext::getProcAddress in the studio, eglGetProcAddress in the headless test). The
// context must be current on the calling thread for every call, the destructor included.
#include <functional>
#include <memory>

#include "longlive/decoder.h"

namespace longlive::ui {

using GlProc = void (*)();
using GlProcLoader = std::function<GlProc(const char* name)>;

class CudaGlUploader {
 public:
  // Whether this build has CUDA (without it, upload() always throws).
  static bool available_in_build();

  // Loads the GL functions it needs; throws Error naming one the context lacks.
  explicit CudaGlUploader(const GlProcLoader& loader);
  ~CudaGlUploader();  // unregisters and deletes the buffer
  CudaGlUploader(const CudaGlUploader&) = delete;
  CudaGlUploader& operator=(const CudaGlUploader&) = delete;

  // Copies the frame ([H, W, 4] uint8 on CUDA, rows of packed pixels) into `texture`
  // (GL_TEXTURE_2D, RGBA8, at least H x W) at (0, 0). Throws Error saying why interop cannot
  // work here (frame not on the GPU, GL context on another GPU or driver, a CUDA or GL failure);
  // the caller then uploads the host frame. Waits on the GPU only for the previous copy, if it
  // is still running, before releasing that frame's memory.
  void upload(const DeviceFrame& frame, unsigned texture);

  // Host time of the last upload's steps that may block the calling thread on the GPU
  // (milliseconds): mapping the buffer for CUDA (waits for GL's use of it) and unmapping it.
  struct Times {
    double map_ms = 0, unmap_ms = 0;
  };
  Times last_times() const;

  unsigned pixel_buffer() const;  // the registered GL buffer (0 before the first upload)
  int registrations() const;      // how often a buffer was registered: once per frame size

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longlive::ui
