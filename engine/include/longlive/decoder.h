#pragma once
// Latents to pixels, block by block. Decoders are stateful across blocks (temporal memory), so
// a video is decoded by calling decode() on consecutive blocks after reset().
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

struct CUevent_st;  // cudaEvent_t == CUevent_st* (DeviceFrame below; no CUDA headers here)

namespace longlive {

// Memory layout of a decoder's activations and conv weights. Same results either way; `best` is
// the layout measured fastest for that decoder on the GPU (docs/benchmarks.md) and the plain
// one on the CPU.
enum class DecoderLayout { best, contiguous, channels_last };

struct DecoderOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // compute dtype (fp16/bf16 on GPU, fp32 on CPU)
  DecoderLayout layout = DecoderLayout::best;
  // CUDA: a convolution with its bias, ReLU (and residual add) as one cuDNN call where the
  // decoder has that pattern (TAEHV). Same math; ignored on the CPU.
  bool fused_conv = true;
};

// Whether a decoder runs channels-last, given the layout measured fastest for it on the GPU.
inline bool runs_channels_last(const DecoderOptions& o, DecoderLayout measured_best_on_gpu) {
  if (o.layout != DecoderLayout::best) return o.layout == DecoderLayout::channels_last;
  return o.device.is_cuda() && measured_best_on_gpu == DecoderLayout::channels_last;
}

class StreamingDecoder {
 public:
  virtual ~StreamingDecoder() = default;
  // Forgets the temporal state: the next decode() starts a new video.
  virtual void reset() = 0;
  // block_latents: [1, T, 16, h, w] DiT latents. Returns the frames this block completes:
  // [N, 3, 8h, 8w] float32 in [0, 1] on the decoder's device (N = 4T - 3 for the first block of a
  // video, 4T after).
  virtual at::Tensor decode(const at::Tensor& block_latents) = 0;
  // Frames decode() yields for a block of `latent_frames` (first block of a video or not).
  virtual int64_t frames_for(int64_t latent_frames, bool first) const = 0;
};

// [N, 3, H, W] in [0, 1] -> [N, H, W, 4] uint8 RGBA (alpha 255), on the same device.
at::Tensor to_rgba8(const at::Tensor& frames);

// ---- Frames on the device
// A decoded frame still on the GPU, for consumers that copy it on the device (the studio's
// CUDA-GL interop) instead of uploading the host copy. No CUDA headers here: the event is an
// opaque cudaEvent_t (CUevent_st*), so CPU-only builds compile the same API.
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
