// Wan 2.1 VAE blocks and the graph builder (names as in `WanVAE_.state_dict()`).
#include "vae/wan_vae_graph.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/env.h"
#include "longlive/error.h"
#include "runtime/fused_ops.h"

namespace longlive::wan_vae {
namespace {

constexpr int64_t kCacheFrames = 2;  // CACHE_T of the reference: frames a causal conv remembers
// The channels-last norm's epsilon under the root: keeps 0 / 0 out of all-zero pixels (the
// reference clamps the norm at 1e-12, which only matters there: both map them to zero).
constexpr double kRmsEps = 1e-30;

// [B, C, T, H, W] <-> [B*T, C, H, W] for the per-frame 2-D layers.
at::Tensor frames_of(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0) * x.size(2), x.size(1), x.size(3), x.size(4)});
}
// Channels-last frames give a channels-last video (no copy); contiguous ones a contiguous video.
at::Tensor video_of(const at::Tensor& frames, int64_t batch) {
  const bool channels_last = frames.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                             !frames.is_contiguous(at::MemoryFormat::Contiguous);
  return frames
      .reshape({batch, frames.size(0) / batch, frames.size(1), frames.size(2), frames.size(3)})
      .transpose(1, 2)
      .contiguous(channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous);
}

}  // namespace

at::Tensor Conv3d::plain(const at::Tensor& x, bool with_bias) const {
  const int64_t pad_h = weight.size(3) / 2, pad_w = weight.size(4) / 2;
  if (taps.empty())
    return at::conv3d(x, weight, with_bias ? bias : at::Tensor(), {stride_t, 1, 1},
                      {0, pad_h, pad_w});
  if (!with_bias) throw Error("Conv3d: a conv run by taps adds its bias first");
  // out[t] = bias + sum_k W_k * in[stride*t + k], frames as the batch.
  const int64_t kt = static_cast<int64_t>(taps.size());
  const int64_t out_frames = (x.size(2) - kt) / stride_t + 1;
  const at::Tensor frames = x[0].transpose(0, 1).contiguous();  // [T, C, H, W]
  at::Tensor out;
  for (int64_t k = 0; k < kt; ++k) {
    const at::Tensor in = frames.slice(0, k, k + stride_t * (out_frames - 1) + 1, stride_t);
    if (k == 0)
      out = at::conv2d(in, taps[0], bias, 1, {pad_h, pad_w});
    else
      out.add_(at::conv2d(in, taps[size_t(k)], {}, 1, {pad_h, pad_w}));
  }
  // In the input's layout, so a channels-last graph stays channels-last on the CPU too.
  return out.transpose(0, 1).unsqueeze(0).contiguous(x.suggest_memory_format());
}

void StreamState::remember(Slot& slot, at::Tensor frames) {
  if (track_changes && !changed)
    changed = !slot.frames.defined() || !slot.frames.sizes().equals(frames.sizes()) ||
              !at::equal(slot.frames, frames);
  slot.frames = std::move(frames);
}

void StreamState::mark_seen(Slot& slot) {
  if (track_changes && !slot.seen) changed = true;
  slot.seen = true;
}

Conv3d::CausalInput Conv3d::begin(const at::Tensor& like, int64_t frames,
                                  StreamState& state) const {
  const Slot& memory = state.slots[size_t(slot)];
  const int64_t cached = memory.frames.defined() ? memory.frames.size(2) : 0;
  const int64_t front = std::max<int64_t>(time_pad - cached, 0);
  // One buffer [zeros | remembered frames | new frames] instead of a cat and a pad.
  std::vector<int64_t> sizes = like.sizes().vec();
  sizes[2] = front + cached + frames;
  CausalInput input;
  input.buffer = at::empty(sizes, like.options().memory_format(like.suggest_memory_format()));
  if (front > 0) input.buffer.narrow(2, 0, front).zero_();
  if (cached > 0) input.buffer.narrow(2, front, cached).copy_(memory.frames);
  input.fresh = input.buffer.narrow(2, front + cached, frames);
  input.zero_frames = front;
  return input;
}

at::Tensor Conv3d::finish(const CausalInput& input, StreamState& state, bool with_bias) const {
  Slot& memory = state.slots[size_t(slot)];
  const int64_t length = input.buffer.size(2);
  const int64_t keep = std::min(kCacheFrames, length - input.zero_frames);
  state.remember(memory, input.buffer.narrow(2, length - keep, keep).clone());
  return plain(input.buffer, with_bias);
}

at::Tensor Conv3d::operator()(const at::Tensor& x, StreamState& state) const {
  if (slot < 0) return plain(x);
  CausalInput input = begin(x, x.size(2), state);
  input.fresh.copy_(x);
  return finish(input, state);
}

at::Tensor RmsNorm::operator()(const at::Tensor& x) const {
  const bool channels_last = (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d)) ||
                             (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast));
  if (channels_last && !x.is_contiguous()) {
    // [N, C, ...] -> [N, ..., C] is a view here. ||x|| = sqrt(C) * rms(x); the reference's
    // clamp at 1e-12 only matters for all-zero pixels, which both map to zero.
    std::vector<int64_t> to_last = {0}, back = {0, x.dim() - 1};
    for (int64_t d = 2; d < x.dim(); ++d) {
      to_last.push_back(d);
      back.push_back(d - 1);
    }
    to_last.push_back(1);
    return at::rms_norm(x.permute(to_last), {x.size(1)}, gamma, kRmsEps).permute(back);
  }
  // F.normalize over channels (eps 1e-12), then gamma * sqrt(C).
  const at::Tensor norm = at::linalg_vector_norm(x, 2, {1}, /*keepdim=*/true).clamp_min_(1e-12);
  return (x / norm).mul_(gain);
}

namespace {

// On a GPU, channels-last: the norm and the SiLU in one pass (fused::rms_silu: one read and one
// write of the activations instead of two each, and a warp per pixel instead of ATen's thread
// block per 96-value row), unless LONGLIVE_VAE_FUSED_NORM=0 (ATen's rms_norm then silu).
bool fused_norm_silu(const at::Tensor& x) {
  static const bool on = !env_is("LONGLIVE_VAE_FUSED_NORM", "0");
  return on && fused::can_rms_silu(x);
}

// conv(silu(norm(x + x_bias))), the SiLU writing straight into the causal conv's input buffer.
// `x_bias` (optional): the bias of the conv that made x without it (added by the fused norm on
// load, else by an add of its own: the same rounding either way). `with_bias` false: the conv's
// output without its own bias (Conv3d::finish).
at::Tensor norm_silu_conv(const RmsNorm& norm, const Conv3d& conv, const at::Tensor& x,
                          StreamState& state, const at::Tensor& x_bias = {},
                          bool with_bias = true) {
  const bool fused = fused_norm_silu(x) && norm.gamma.scalar_type() == x.scalar_type() &&
                     (!x_bias.defined() || x_bias.scalar_type() == x.scalar_type());
  auto biased = [&] {  // for the unfused paths
    if (!x_bias.defined()) return x;
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = x.size(1);
    return x + x_bias.view(shape);
  };
  if (conv.slot < 0) {
    if (!fused) return conv.plain(at::silu(norm(biased())), with_bias);
    const at::Tensor activated = at::empty_like(x);
    fused::rms_silu(x, norm.gamma, kRmsEps, activated, x_bias);
    return conv.plain(activated, with_bias);
  }
  Conv3d::CausalInput input = conv.begin(x, x.size(2), state);
  if (fused && fused::can_rms_silu(input.fresh))
    fused::rms_silu(x, norm.gamma, kRmsEps, input.fresh, x_bias);
  else
    at::silu_out(input.fresh, norm(biased()));
  return conv.finish(input, state, with_bias);
}

// On a GPU in 16 bits, channels-last, with the fused norm: a residual block's convolutions run
// without their biases (ATen adds a cuDNN conv's bias in a pass of its own, ~15 % of the
// encoder's time): conv1's is added by the norm before conv2 as it loads, conv2's and the
// shortcut's by one pass with the residual add. Bit for bit the same (each add rounds as ATen's
// does), unless LONGLIVE_VAE_FOLD_BIAS=0.
bool fold_biases(const ResidualBlock& block, const at::Tensor& x) {
  if (env_is("LONGLIVE_VAE_FOLD_BIAS", "0")) return false;
  auto folds = [&](const Conv3d& c) {
    return c.taps.empty() && c.bias.scalar_type() == x.scalar_type() && c.weight.size(0) % 8 == 0;
  };
  return fused_norm_silu(x) && fused::can_bias_residual_add(x) && folds(block.conv1) &&
         folds(block.conv2) && (!block.shortcut || folds(*block.shortcut));
}

}  // namespace

at::Tensor ResidualBlock::operator()(const at::Tensor& x, StreamState& state) const {
  if (fold_biases(*this, x)) {
    const at::Tensor skip = shortcut ? shortcut->plain(x, false) : x;
    const at::Tensor y = norm_silu_conv(norm1, conv1, x, state, {}, false);
    at::Tensor out = norm_silu_conv(norm2, conv2, y, state, conv1.bias, false);
    if (fused::can_bias_residual_add(out) && fused::can_bias_residual_add(skip) &&
        out.strides() == skip.strides()) {
      fused::bias_residual_add(out, conv2.bias, skip, shortcut ? shortcut->bias : at::Tensor());
      return out;
    }
    // Another layout than expected: the same adds, one at a time.
    const std::vector<int64_t> shape{1, out.size(1), 1, 1, 1};
    out.add_(conv2.bias.view(shape));
    return shortcut ? out.add_(skip + shortcut->bias.view(shape)) : out.add_(skip);
  }
  const at::Tensor skip = shortcut ? shortcut->plain(x) : x;
  const at::Tensor y = norm_silu_conv(norm1, conv1, x, state);
  return norm_silu_conv(norm2, conv2, y, state).add_(skip);
}

at::Tensor AttentionBlock::operator()(const at::Tensor& x) const {
  // Single-head attention over the positions of each frame.
  const int64_t b = x.size(0), c = x.size(1), h = x.size(3), w = x.size(4);
  at::Tensor frames = norm(frames_of(x));
  const int64_t n = frames.size(0);
  const auto qkv = at::conv2d(frames, qkv_w, qkv_b)
                       .reshape({n, 1, 3 * c, h * w})
                       .permute({0, 1, 3, 2})
                       .chunk(3, -1);
  at::Tensor out = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]);
  out = out.squeeze(1).permute({0, 2, 1}).reshape({n, c, h, w});
  return video_of(at::conv2d(out, proj_w, proj_b), b).add_(x);
}

at::Tensor Resample::operator()(const at::Tensor& input, StreamState& state) const {
  at::Tensor x = input;
  const int64_t b = x.size(0);
  if (mode == Mode::upsample3d) {
    // The first frame of a video passes through; later frames become two frames each (the time
    // conv doubles the channels, split as [2, C] and interleaved in time).
    Slot& memory = state.slots[size_t(slot)];
    at::Tensor first, rest = x;
    if (!memory.seen) {
      state.mark_seen(memory);
      first = x.narrow(2, 0, 1);
      rest = x.narrow(2, 1, x.size(2) - 1);
    }
    if (rest.size(2) > 0) {
      const at::Tensor y = (*time_conv)(rest, state);
      const int64_t c = y.size(1) / 2, t = y.size(2);
      // Frames [first | doubled...] written in place, in the input's layout (one copy).
      const int64_t lead = first.defined() ? 1 : 0;
      x = at::empty({b, c, lead + 2 * t, y.size(3), y.size(4)},
                    y.options().memory_format(input.suggest_memory_format()));
      if (lead) x.narrow(2, 0, 1).copy_(first);
      x.narrow(2, lead, 2 * t)
          .view({b, c, t, 2, y.size(3), y.size(4)})
          .copy_(y.view({b, 2, c, t, y.size(3), y.size(4)}).permute({0, 2, 3, 1, 4, 5}));
    } else {
      x = first;
    }
  }
  at::Tensor frames = frames_of(x);
  if (mode == Mode::upsample2d || mode == Mode::upsample3d) {
    // 'nearest-exact' and 'nearest' pick the same source pixel at an exact 2x scale.
    frames = at::upsample_nearest2d(frames, {frames.size(2) * 2, frames.size(3) * 2});
    frames = at::conv2d(frames, conv_w, conv_b, 1, 1);
  } else {
    frames = at::constant_pad_nd(frames, {0, 1, 0, 1});  // right and bottom only
    frames = at::conv2d(frames, conv_w, conv_b, 2);
  }
  x = video_of(frames, b);
  if (mode == Mode::downsample3d) {
    // First frame passes; later frames are halved by a stride-2 time conv that also sees the
    // previous input frame.
    Slot& memory = state.slots[size_t(slot)];
    at::Tensor first, rest = x;
    if (!memory.seen) {
      state.mark_seen(memory);
      first = x.narrow(2, 0, 1);
      rest = x.narrow(2, 1, x.size(2) - 1);
      state.remember(memory, first.clone());
    }
    if (rest.size(2) == 0) return first;
    const at::Tensor with_previous = at::cat({memory.frames, rest}, 2);
    state.remember(memory, rest.narrow(2, rest.size(2) - 1, 1).clone());
    const at::Tensor y = time_conv->plain(with_previous);
    x = first.defined() ? at::cat({first, y}, 2) : y;
  }
  return x;
}

namespace {

at::Tensor run_blocks(const std::vector<Block>& blocks, size_t begin, size_t end, at::Tensor x,
                      StreamState& state) {
  for (size_t i = begin; i < end; ++i) {
    x = std::visit(
        [&](const auto& b) -> at::Tensor {
          if constexpr (std::is_same_v<std::decay_t<decltype(b)>, AttentionBlock>)
            return b(x);
          else
            return b(x, state);
        },
        blocks[i]);
  }
  return x;
}

}  // namespace

at::Tensor Graph::trunk(const at::Tensor& input, StreamState& state) const {
  const at::Tensor x =
      channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast3d) : input.contiguous();
  return run_blocks(blocks, 0, trunk_blocks, conv_in(outer.plain(x), state), state);
}

at::Tensor Graph::branch(const at::Tensor& input, StreamState& state) const {
  const at::Tensor x = run_blocks(blocks, trunk_blocks, blocks.size(), input, state);
  return norm_silu_conv(head_norm, head_conv, x, state);
}

at::Tensor Graph::forward(const at::Tensor& input, StreamState& state) const {
  if (is_decoder) return branch(trunk(input, state), state);
  const at::Tensor pixels =
      channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast3d) : input;
  const at::Tensor x = run_blocks(blocks, 0, blocks.size(), conv_in(pixels, state), state);
  return outer.plain(norm_silu_conv(head_norm, head_conv, x, state));
}

namespace {

// Reads tensors of one graph, checking shapes against the widths seen so far.
class Builder {
 public:
  Builder(const WeightStore& w, at::Device device, at::ScalarType dtype, bool channels_last)
      : w_(w), device_(device), dtype_(dtype), channels_last_(channels_last) {}

  bool has(const std::string& name) const { return w_.contains(name); }

  const at::Tensor& raw(const std::string& name, int64_t dims) const {
    const at::Tensor& t = w_.get(name);
    if (t.dim() != dims)
      throw WeightError(fmt::format("{}: '{}' has shape [{}], expected a {}-D tensor (Wan VAE)",
                                    w_.source_of(name), name, fmt::join(t.sizes(), ", "), dims));
    return t;
  }
  at::Tensor load(const at::Tensor& t) const { return t.to(device_, dtype_).contiguous(); }
  // Conv weights in the activations' layout (else cuDNN would convert them on every call).
  at::Tensor load_conv(const at::Tensor& t) const {
    if (!channels_last_) return load(t);
    return t.to(device_, dtype_)
        .contiguous(t.dim() == 5 ? at::MemoryFormat::ChannelsLast3d
                                 : at::MemoryFormat::ChannelsLast);
  }

  void expect_channels(const std::string& name, int64_t dim, int64_t expected) const {
    const at::Tensor& t = w_.get(name);
    if (t.size(dim) != expected)
      throw WeightError(fmt::format(
          "{}: '{}' has shape [{}], expected {} {} channels (follows the previous layer)",
          w_.source_of(name), name, fmt::join(t.sizes(), ", "), expected,
          dim == 0 ? "output" : "input"));
  }

  // CausalConv3d `prefix`.{weight,bias}; in_channels -1 = not checked.
  Conv3d conv3d(const std::string& prefix, int64_t in_channels, bool cached, int64_t time_pad,
                int64_t stride_t = 1) {
    const at::Tensor& weight = raw(prefix + ".weight", 5);
    if (in_channels >= 0) expect_channels(prefix + ".weight", 1, in_channels);
    const at::Tensor& bias = raw(prefix + ".bias", 1);
    expect_channels(prefix + ".bias", 0, weight.size(0));
    Conv3d c{load_conv(weight), load(bias), time_pad, stride_t, -1, {}};
    if (cached) c.slot = slot_count++;
    if (device_.is_cpu())
      for (int64_t k = 0; k < weight.size(2); ++k)
        c.taps.push_back(c.weight.select(2, k).contiguous());
    return c;
  }
  // Conv2d `prefix`.{weight,bias} with a k x k kernel.
  std::pair<at::Tensor, at::Tensor> conv2d(const std::string& prefix, int64_t in_channels) {
    const at::Tensor& weight = raw(prefix + ".weight", 4);
    expect_channels(prefix + ".weight", 1, in_channels);
    const at::Tensor& bias = raw(prefix + ".bias", 1);
    expect_channels(prefix + ".bias", 0, weight.size(0));
    return {load_conv(weight), load(bias)};
  }
  RmsNorm norm(const std::string& name, int64_t channels, int64_t dims) {
    const at::Tensor& gamma = raw(name, dims);
    expect_channels(name, 0, channels);
    // The gain in float64, rounded once to the compute dtype: a float64 decoder then computes what
    // the reference computes in float64 (no float32 rounding of gamma * sqrt(C)).
    return {load(gamma.to(at::kDouble) * std::sqrt(double(channels))), load(gamma.reshape({-1}))};
  }

  ResidualBlock residual(const std::string& p, int64_t in) {
    ResidualBlock r;
    r.norm1 = norm(p + "residual.0.gamma", in, 4);
    r.conv1 = conv3d(p + "residual.2", in, true, 2);
    const int64_t out = r.conv1.weight.size(0);
    r.norm2 = norm(p + "residual.3.gamma", out, 4);
    r.conv2 = conv3d(p + "residual.6", out, true, 2);
    expect_channels(p + "residual.6.weight", 0, out);
    if (has(p + "shortcut.weight")) {
      r.shortcut = conv3d(p + "shortcut", in, false, 0);
      expect_channels(p + "shortcut.weight", 0, out);
    } else if (in != out) {
      throw WeightError(
          fmt::format("{}: '{}shortcut.weight' is missing (block maps {} to {} "
                      "channels)",
                      w_.describe_sources(), p, in, out));
    }
    return r;
  }

  AttentionBlock attention(const std::string& p, int64_t c) {
    AttentionBlock a;
    a.norm = norm(p + "norm.gamma", c, 3);
    std::tie(a.qkv_w, a.qkv_b) = conv2d(p + "to_qkv", c);
    expect_channels(p + "to_qkv.weight", 0, 3 * c);
    std::tie(a.proj_w, a.proj_b) = conv2d(p + "proj", c);
    expect_channels(p + "proj.weight", 0, c);
    return a;
  }

  Resample resample(const std::string& p, int64_t c, bool up) {
    Resample r;
    const bool temporal = has(p + "time_conv.weight");
    r.mode = up ? (temporal ? Resample::Mode::upsample3d : Resample::Mode::upsample2d)
                : (temporal ? Resample::Mode::downsample3d : Resample::Mode::downsample2d);
    if (temporal && up) {
      r.time_conv = conv3d(p + "time_conv", c, true, 2);
      expect_channels(p + "time_conv.weight", 0, 2 * c);
      r.slot = r.time_conv->slot;
    } else if (temporal) {
      r.time_conv = conv3d(p + "time_conv", c, false, 0, 2);
      expect_channels(p + "time_conv.weight", 0, c);
      r.slot = slot_count++;
    }
    std::tie(r.conv_w, r.conv_b) = conv2d(p + "resample.1", c);
    return r;
  }

  // Residual / attention / resample blocks `prefix`.{0,1,...}; returns the output width.
  int64_t blocks(const std::string& prefix, int64_t c, bool up, std::vector<Block>& out) {
    for (int i = 0;; ++i) {
      const std::string p = fmt::format("{}.{}.", prefix, i);
      if (has(p + "residual.0.gamma")) {
        ResidualBlock r = residual(p, c);
        c = r.conv2.weight.size(0);
        out.emplace_back(std::move(r));
      } else if (has(p + "to_qkv.weight")) {
        out.emplace_back(attention(p, c));
      } else if (has(p + "resample.1.weight")) {
        Resample r = resample(p, c, up);
        c = r.conv_w.size(0);
        out.emplace_back(std::move(r));
      } else {
        if (i == 0)
          throw WeightError(fmt::format("{}: no '{}.0.*' tensors (Wan VAE {})",
                                        w_.describe_sources(), prefix, prefix));
        return c;
      }
    }
  }

  int slot_count = 0;

 private:
  const WeightStore& w_;
  at::Device device_;
  at::ScalarType dtype_;
  bool channels_last_ = false;
};

}  // namespace

Graph build_graph(const WeightStore& weights, bool is_decoder, at::Device device,
                  at::ScalarType dtype, bool channels_last) {
  Builder b(weights, device, dtype, channels_last);
  Graph g;
  g.is_decoder = is_decoder;
  g.channels_last = channels_last;
  const std::string root = is_decoder ? "decoder" : "encoder";
  if (!b.has(root + ".conv1.weight"))
    throw WeightError(fmt::format("{}: '{}.conv1.weight' is missing: not a Wan VAE {}",
                                  weights.describe_sources(), root, root));
  if (is_decoder) {
    g.outer = b.conv3d("conv2", -1, false, 0);
    const int64_t z = g.outer.weight.size(0);
    g.conv_in = b.conv3d("decoder.conv1", z, true, 2);
    int64_t c = g.conv_in.weight.size(0);
    c = b.blocks("decoder.middle", c, true, g.blocks);
    g.trunk_blocks = g.blocks.size();
    c = b.blocks("decoder.upsamples", c, true, g.blocks);
    g.head_norm = b.norm("decoder.head.0.gamma", c, 4);
    g.head_conv = b.conv3d("decoder.head.2", c, true, 2);
  } else {
    g.conv_in = b.conv3d("encoder.conv1", 3, true, 2);
    int64_t c = g.conv_in.weight.size(0);
    c = b.blocks("encoder.downsamples", c, false, g.blocks);
    c = b.blocks("encoder.middle", c, false, g.blocks);
    g.head_norm = b.norm("encoder.head.0.gamma", c, 4);
    g.head_conv = b.conv3d("encoder.head.2", c, true, 2);
    g.outer = b.conv3d("conv1", g.head_conv.weight.size(0), false, 0);
  }
  g.slot_count = b.slot_count;
  return g;
}

}  // namespace longlive::wan_vae
