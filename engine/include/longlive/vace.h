#pragma once
// VACE context encoding: control frames, masks and reference images -> the 96-channel context a
// VACE-conditioned block reads (StreamGenerator::set_vace). As Wan2.1-VACE and Scope's causal
// adaptation (the fixtures' reference) do:
//   masks are binarised at 0.5 (1 = generate, 0 = keep);
//   inactive = frames * (1 - m) and reactive = frames * m, each through the Wan VAE encoder with
//   its own streaming cache, concatenated -> 32 channels;
//   the mask -> 64 channels (8x8 pixel blocks to channels, nearest-exact in time to the latent
//   frames), a zero frame in front per reference image;
//   context = cat(latents, mask latent) -> 96 channels.
// A reference image is encoded alone (its own, fresh cache), zero-padded to the channels of what
// it is put in front of. Conditioning maps (depth, pose, edges) use an all-ones mask.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "longlive/decoder.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {

// The Wan 2.1 VAE's strides (time, height, width).
inline constexpr std::array<int64_t, 3> kVaceVaeStride = {4, 8, 8};

// mask [T, H, W] (any float, binarised at 0.5 by the caller or not: values are used as given)
// -> [stride_h * stride_w, (T + 3) / stride_t + references, H / stride_h, W / stride_w] float32.
// H and W must be multiples of 2 * stride (as the reference computes the latent size).
at::Tensor vace_mask_latent(const at::Tensor& mask, int64_t references = 0,
                            const std::array<int64_t, 3>& stride = kVaceVaeStride);

// The context from its parts: latents [2 z, F, h, w] (inactive, reactive) and the mask latent
// [64, F, h, w] -> [2 z + 64, F, h, w]. ConfigError when the parts do not fit together.
at::Tensor vace_context(const at::Tensor& latents, const at::Tensor& mask_latent);

// Binarises a mask at 0.5 (values > 0.5 -> 1).
at::Tensor vace_binarize_mask(const at::Tensor& mask);

class WanVaeEncoder;

// Deterministic random VACE weights for `dit` (tests, the tiny random model, `bench --vace`):
// ceil(layers / stride) blocks, module-file names, weights N(0,1)/sqrt(fan_in) as
// make_random_wan_weights (implemented in model/vace.cpp).
WeightStore make_random_vace_weights(const WanConfig& dit, int64_t in_channels, uint64_t seed,
                                     int64_t stride = 2);

// Streaming VACE encoder over the Wan VAE encoder: one per session, reset() at a new video.
class VaceContextEncoder {
 public:
  // vae: Wan2.1_VAE weights with `encoder.*` and `conv1.*`.
  VaceContextEncoder(const WeightStore& vae, const DecoderOptions& options);
  ~VaceContextEncoder();
  VaceContextEncoder(VaceContextEncoder&&) noexcept;
  VaceContextEncoder& operator=(VaceContextEncoder&&) noexcept;

  // Empties both streaming caches: the next block is the first of a video.
  void reset();

  // One block of control frames [T, 3, H, W] in [-1, 1] (T = 1 + 4k for the first block of a
  // stream, 4k later: 9 then 12 for LongLive's 3 latent frames per block); mask [T, H, W] or
  // [1, T, H, W] (undefined: all ones, the conditioning mode); references [R, 3, H, W] in [-1, 1]
  // (undefined or R = 0: none), put in front. Returns [96, R + F, H/8, W/8] float32.
  at::Tensor encode(const at::Tensor& frames, const at::Tensor& mask,
                    const at::Tensor& references = {});
  // Reference images only (no control frames): [R, 3, H, W] -> [96, R, H/8, W/8], the latents
  // zero-padded to 96 channels. Does not touch the streaming caches.
  at::Tensor encode_references(const at::Tensor& references);

  // The parts, for tests: inactive/reactive latents of the last encode() [16, F, h, w] each.
  const at::Tensor& last_inactive() const;
  const at::Tensor& last_reactive() const;
  int64_t channels() const { return 96; }
  int64_t temporal_scale() const;  // control frames per latent frame (4)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Live conditioning ---------------------------------------------------------------------

class StreamGenerator;

// What the control input is (docs/vace.md):
//   conditioning  control frames (depth, pose, edges, ... made elsewhere) with an all-ones mask,
//                 optionally reference images in front;
//   reference     reference images only (reference-to-video), no frames;
//   inpaint       video frames with a mask: 1 (white) = generate, 0 = keep.
enum class VaceMode { conditioning, reference, inpaint };
VaceMode parse_vace_mode(const std::string& name);  // ConfigError naming the choices
std::string to_string(VaceMode mode);

// Control frames, block by block (a video file, a camera, a test pattern).
class VaceFrameSource {
 public:
  virtual ~VaceFrameSource() = default;
  // The next `count` frames, [count, 3, H, W] float32 in [-1, 1] at the session's size.
  virtual at::Tensor next_frames(int64_t count) = 0;
  // A live input's health: frames dropped (generation behind) and repeated (input stalled), and
  // why its capture ended (a camera unplugged). Files have none.
  struct Counts {
    int64_t dropped = 0;
    int64_t repeated = 0;
    std::string error;
  };
  virtual Counts counts() const { return {}; }
};

struct VaceSettings {
  VaceMode mode = VaceMode::conditioning;
  double scale = 1.0;
  at::Tensor references;  // [R, 3, H, W] in [-1, 1]; undefined: none
  at::Tensor mask;        // inpaint: [H, W] (or [T, H, W] per block), 1 = generate
};

// Feeds a generator block by block: before each next_block(), takes the block's control frames
// (1 + 4 (F - 1) for the first block of a video, 4 F later: 9 then 12 for 3 latent frames per
// block, the frames the decoder gives back), encodes them with the mask and references, and
// sets the result on the generator.
class VaceConditioner {
 public:
  // ConfigError when the settings do not fit the mode (no source for conditioning or inpaint,
  // no mask for inpaint, no references for reference).
  VaceConditioner(std::unique_ptr<VaceContextEncoder> encoder, VaceSettings settings,
                  std::shared_ptr<VaceFrameSource> source);
  ~VaceConditioner();
  void before_block(StreamGenerator& generator);
  void set_scale(double scale) { settings_.scale = scale; }
  const VaceSettings& settings() const { return settings_; }
  // A new video: the encoder's streaming caches are emptied, the next block is a first block.
  void reset();
  int64_t blocks() const { return blocks_; }

 private:
  std::unique_ptr<VaceContextEncoder> encoder_;
  VaceSettings settings_;
  std::shared_ptr<VaceFrameSource> source_;
  at::Tensor reference_context_;  // reference mode: encoded once
  int64_t blocks_ = 0;
};

// ---- Video-to-video (no VACE) ------------------------------------------------------------------

struct VideoToVideoState;

// Feeds a generator's video-to-video input block by block: the block's input frames (9, then 12,
// as for VACE) through the Wan VAE encoder (one streaming cache), set with the strength.
class VideoToVideo {
 public:
  VideoToVideo(std::unique_ptr<WanVaeEncoder> encoder, double strength,
               std::shared_ptr<VaceFrameSource> source);
  ~VideoToVideo();
  void before_block(StreamGenerator& generator);
  void set_strength(double strength) { strength_ = strength; }
  void reset();  // a new video

 private:
  std::unique_ptr<WanVaeEncoder> encoder_;
  std::unique_ptr<VideoToVideoState> state_;
  double strength_;
  std::shared_ptr<VaceFrameSource> source_;
  int64_t blocks_ = 0;
};

}  // namespace longlive
