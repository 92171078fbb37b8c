#pragma once
// TAEHV (taew2_1), the tiny streaming decoder for live preview: a StreamingDecoder built from its
// weights by their original names (`decoder.*`, from taew2_1.pth or safetensors). Its encoder
// (`encoder.*` of the same file) is the fast alternative to the Wan VAE's for a VACE input.
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "longlive/decoder.h"
#include "longlive/weights.h"

namespace longlive {

std::unique_ptr<StreamingDecoder> make_taehv_decoder(const WeightStore& weights,
                                                     const DecoderOptions& options);
// Loads taew2_1.pth / safetensors, keeping the `decoder.*` tensors.
WeightStore load_taehv_weights(const std::filesystem::path& file);
// Random TAEHV weights (full architecture, as the class fixes its widths) for tests and benches.
WeightStore make_random_taehv_weights(uint64_t seed);

// TAEHV's encoder (taehv.py `TAEHV.encoder`, taew2_1): frames in [0, 1] -> latent frames in the
// DiT's latent space (what TAEHV's decoder takes), 4 frames per latent frame, 1/8 the size, 16
// channels. A conv + ReLU, then three stages of [time pool (a 1x1 conv over 2, 2 and 1 stacked
// frames), stride-2 conv, 3 memory blocks], then the output conv. ~1/30 of the Wan VAE encoder's
// work: Daydream Scope's `vae_type: tae` encodes VACE inputs with it. Immutable; streams share it.
class TaehvEncoder {
 public:
  // One video's memory: each memory block's last input frame (none before the first frames).
  struct Stream {
    std::vector<at::Tensor> past;
    bool started() const { return !past.empty(); }
    void reset() { past.clear(); }
  };
  // `encoder.*` tensors (load_taehv_encoder_weights). On a CUDA device channels-last with
  // cuDNN's fused conv + ReLU calls (the same math); the CPU runs the plain layers.
  TaehvEncoder(const WeightStore& weights, at::Device device = at::kCPU,
               at::ScalarType dtype = at::kFloat);

  // frames [T, 3, H, W] in [0, 1], H and W multiples of 8, continuing `stream` ->
  // [ceil(T / 4), 16, H / 8, W / 8] float32. A count that is not a multiple of 4 is padded at the
  // end with the last frame, as the reference does (the padding enters the memory).
  // frames_per_pass: 0, all at once; n (a multiple of 4), n frames per pass: the same latents
  // up to the convolutions' rounding, which depends on how many frames a pass holds.
  at::Tensor encode_next(const at::Tensor& frames, Stream& stream,
                         int64_t frames_per_pass = 0) const;

  static constexpr int64_t kTimeDownscale = 4;
  at::Device device() const { return device_; }

 private:
  struct Conv {
    at::Tensor weight, bias;  // bias may be undefined
  };
  struct Stage {
    at::Tensor pool;  // [C, stride * C, 1, 1]
    int64_t stride = 1;
    at::Tensor down;  // stride-2 3x3, no bias
    Conv mem[3][3];   // per memory block: conv.0 (2C -> C), conv.2, conv.4
  };
  at::Tensor pass(at::Tensor x, Stream& stream) const;
  at::Tensor conv(const Conv& c, const at::Tensor& x, bool relu) const;
  at::Tensor memory_block(const Conv (&convs)[3], at::Tensor& past, const at::Tensor& x) const;

  at::Device device_;
  at::ScalarType dtype_;
  bool cuda_ = false;
  Conv input_, output_;
  std::vector<Stage> stages_;
};

// Loads taew2_1.pth / safetensors, keeping the `encoder.*` tensors (WeightError naming the file
// when it has none).
WeightStore load_taehv_encoder_weights(const std::filesystem::path& file);
// Random TAEHV encoder weights (the fixed architecture) for tests and benches.
WeightStore make_random_taehv_encoder_weights(uint64_t seed);

}  // namespace longlive
