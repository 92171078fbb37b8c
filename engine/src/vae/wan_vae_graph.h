#pragma once
// Building blocks of the Wan 2.1 VAE (`wan/modules/vae.py`) as immutable weight graphs plus a
// separate temporal state, so several streams (tiles, a preview and an export) can share one copy
// of the weights.
//
// Causal time handling, stated once: every temporal convolution sees its input sequence with two
// zero frames in front (kernel 3). A stream keeps, per convolution, the last two input frames it
// saw ("slot"), so decoding a video block by block equals decoding it in one call. The temporal
// up/down-samplers pass the first frame of a video through unchanged and apply their time
// convolution to the frames after it, which is what the reference's 'Rep' marker encodes.
#include <ATen/ATen.h>

#include <string>
#include <variant>
#include <vector>

#include "longlive/wan_vae.h"
#include "longlive/weights.h"

namespace longlive::wan_vae {

// Temporal memory of one stream.
struct Slot {
  at::Tensor frames;  // last <= 2 input frames [B, C, t, H, W]; undefined before any
  bool seen = false;  // temporal resamplers: the first frame of the video has passed
};
struct StreamState {
  std::vector<Slot> slots;
  // While tracking: whether an update wrote something other than what its slot held. A forward
  // that leaves the state unchanged has reached a fixed point for its input (the encoder is a
  // function of input and state), so the same input would give the same output again.
  bool track_changes = false;
  bool changed = false;
  void clear() { slots.assign(slots.size(), Slot{}); }
  void remember(Slot& slot, at::Tensor frames);  // slot.frames = frames, noting a change
  void mark_seen(Slot& slot);                    // slot.seen = true, noting a change
};

struct Conv3d {
  at::Tensor weight, bias;
  int64_t time_pad = 0;  // zero frames in front (2 for kernel 3, 0 for 1x1x1 and strided)
  int64_t stride_t = 1;
  int slot = -1;  // state slot, -1 when the conv keeps no memory
  // CPU: the conv runs as one 2-D conv per time tap over frame-major input (ATen's CPU conv3d
  // falls back to an im2col of 27x the input and is ~3x slower); weight[:, :, k] per tap.
  std::vector<at::Tensor> taps;
  // Causal conv over x continuing the sequence remembered in `slot` (updated).
  at::Tensor operator()(const at::Tensor& x, StreamState& state) const;
  // The same in two steps, so the layer before can write its output straight into the conv's
  // input (no copy): begin() lays out [zero frames | remembered frames | `frames` new ones] and
  // returns the new frames' place; finish() remembers the last frames and convolves.
  struct CausalInput {
    at::Tensor buffer;        // [B, C, front + cached + frames, H, W]
    at::Tensor fresh;         // the last `frames` frames of buffer, for the caller to fill
    int64_t zero_frames = 0;  // padding in front (not remembered)
  };
  CausalInput begin(const at::Tensor& like, int64_t frames, StreamState& state) const;
  // `with_bias` false: the output without the bias, which the caller adds in a pass of its own
  // (only where the conv is one cuDNN call, no taps: ATen adds a cuDNN conv's bias after it too).
  at::Tensor finish(const CausalInput& input, StreamState& state, bool with_bias = true) const;
  // Stateless pointwise / plain use.
  at::Tensor plain(const at::Tensor& x, bool with_bias = true) const;
};

struct RmsNorm {
  at::Tensor gain;   // gamma * sqrt(C), broadcastable to the input
  at::Tensor gamma;  // [C], for channels-last input
  // x / max(||x||, 1e-12) * gain over the channels. Channels-last input: ATen's rms_norm over
  // the innermost dimension (x / rms(x) * gamma, the same map), one pass instead of three.
  at::Tensor operator()(const at::Tensor& x) const;
};

struct ResidualBlock {
  RmsNorm norm1, norm2;
  Conv3d conv1, conv2;
  std::optional<Conv3d> shortcut;
  at::Tensor operator()(const at::Tensor& x, StreamState& state) const;
};

struct AttentionBlock {
  RmsNorm norm;
  at::Tensor qkv_w, qkv_b, proj_w, proj_b;
  at::Tensor operator()(const at::Tensor& x) const;
};

struct Resample {
  enum class Mode { upsample2d, upsample3d, downsample2d, downsample3d } mode;
  at::Tensor conv_w, conv_b;  // 2-D conv after the spatial resize
  std::optional<Conv3d> time_conv;
  int slot = -1;
  at::Tensor operator()(const at::Tensor& x, StreamState& state) const;
};

using Block = std::variant<ResidualBlock, AttentionBlock, Resample>;

// Encoder3d or Decoder3d, plus WanVAE_'s 1x1x1 conv on its side (conv2 before the decoder,
// conv1 after the encoder).
struct Graph {
  Conv3d outer;  // decoder: conv2 (applied first); encoder: conv1 (applied last)
  Conv3d conv_in;
  std::vector<Block> blocks;  // decoder: middle, upsamples; encoder: downsamples, middle
  size_t trunk_blocks = 0;    // decoder: blocks up to the end of the middle (latent resolution)
  RmsNorm head_norm;
  Conv3d head_conv;
  int slot_count = 0;
  bool is_decoder = true;
  // Activations in channels-last (N, T, H, W, C) order, cuDNN's native layout for its
  // tensor-core convolutions: the conv weights are stored that way and the input is converted
  // once on entry; every layer keeps the layout of its input.
  bool channels_last = false;

  // Decoder: x [1, z, T, h, w] (de-normalised latents) -> [1, 3, N, H, W].
  // Encoder: x [1, 3, T, H, W] -> [1, 2z, T', h, w] (after conv1).
  at::Tensor forward(const at::Tensor& x, StreamState& state) const;
  // The decoder in two parts: the trunk (conv2, conv1, middle incl. its frame-global attention)
  // at latent resolution, and the rest. forward = branch(trunk(x)); tiled decoding runs the
  // trunk on whole frames and only the branch per tile.
  at::Tensor trunk(const at::Tensor& x, StreamState& state) const;
  at::Tensor branch(const at::Tensor& x, StreamState& state) const;
  StreamState new_state() const {
    StreamState state;
    state.slots.resize(size_t(slot_count));
    return state;
  }
};

// Builds the graph of `decoder.*` (is_decoder) or `encoder.*` from the weights, converting to
// the device and dtype (conv weights channels-last when `channels_last`). WeightError names the
// first missing or mis-shaped tensor.
Graph build_graph(const WeightStore& weights, bool is_decoder, at::Device device,
                  at::ScalarType dtype, bool channels_last = false);

}  // namespace longlive::wan_vae
