#pragma once
// A decoded frame still on the GPU, for consumers that copy it on the device (the studio's
// CUDA-GL interop) instead of uploading the host copy. No CUDA headers here: the event is an
// opaque cudaEvent_t (CUevent_st*), so CPU-only builds compile the same API.
#include <ATen/core/Tensor.h>

#include <memory>

struct CUevent_st;  // cudaEvent_t == CUevent_st*

namespace longlive {

struct DeviceFrame {
  // [H, W, 4] uint8 RGBA on a CUDA device: a view of its block's decode output, which stays
  // allocated while any frame of the block holds it. A consumer that reads it on a stream of its
  // own keeps it until that read is done (the memory goes back to the decode stream's pool when
  // the last reference drops).
  at::Tensor rgba;
  // Recorded on the decode stream once `rgba` is written: wait on it (cudaStreamWaitEvent) before
  // reading on another stream. Shared by the block's frames, destroyed with the last of them.
  std::shared_ptr<CUevent_st> ready;

  bool on_device() const { return rgba.defined() && rgba.is_cuda() && ready != nullptr; }
};

}  // namespace longlive
