// Export-grade Wan VAE decoding of a whole session: temporal slices (exact, through the feature
// cache), spatial tiles with linear blending in the overlaps only, finished slices to host memory.
//
// Order of work: slices outer, tiles inner. The trunk (layers at latent resolution, including the
// middle block's attention over the whole frame) always runs on whole frames: it is small, and
// tiling the attention would change it everywhere. Only the upsampling branch is tiled; each tile
// is its own stream (a fork of the decoder with its own feature cache), so slicing stays exact
// and the only approximation is at tile borders (zero padding instead of the neighbours, within
// the branch's receptive field). On a GPU, tile caches wait in host memory between slices when
// the budget cannot hold all of them.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/wan_vae.h"

namespace longlive {
namespace {

// Device bytes of one decoder pass, from a walk over the same layers the decoder runs. Each
// layer's peak counts its input, its temporaries as our implementation allocates them, and one
// extra copy of every convolution's input for backend reorders/workspaces, with its channels
// padded as the backend's blocked layouts pad them (see kBackendChannelBlock).
struct Cost {
  int64_t working = 0;       // activations at their peak, incl. the float32 output of the pass
  int64_t trunk_cache = 0;   // feature cache of the whole-frame trunk
  int64_t branch_cache = 0;  // feature cache of one branch (tile)
  int64_t total(int64_t branches = 1) const {
    return working + trunk_cache + branches * branch_cache;
  }
};

// oneDNN (ATen's CPU convolution) computes in channel-blocked layouts and reorders a conv's input
// into one, its channels padded to a multiple of the block (16 floats with AVX-512, 8 with AVX2).
// Negligible at the released widths (multiples of 16), it dominates a narrow model's working set:
// a 2-channel conv's blocked input is 8x its plain one (measured: the last stage of a width-2
// decoder peaks at 6C + 16 times one channel's bytes, against 7C for C >= 16).
constexpr int64_t kBackendChannelBlock = 16;
int64_t blocked(int64_t channels) {
  return (channels + kBackendChannelBlock - 1) / kBackendChannelBlock * kBackendChannelBlock;
}

// The trunk runs on h x w, the branch on a th x tw tile of it.
Cost decode_cost(const WanVaeConfig& c, int64_t h, int64_t w, int64_t th, int64_t tw,
                 int64_t frames, int64_t e, bool first) {
  int64_t t = frames, a = h * w, peak = 0, cache = 0, largest_slot = 0;
  auto note = [&](int64_t bytes) { peak = std::max(peak, bytes); };
  auto remember = [&](int64_t channels) {  // two frames per cached conv
    const int64_t slot = 2 * channels * a * e;
    cache += slot;
    largest_slot = std::max(largest_slot, slot);
  };
  // Bytes of a causal conv ci -> co beyond its live input: the input buffer + a frame-major or
  // reordered copy of it (counted in the backend's channel-blocked layout); output + a tap's
  // output + a copy.
  auto conv_bytes = [&](int64_t ci, int64_t co) {
    return ((ci + blocked(ci)) * (t + 2) + 3 * co * t) * a * e;
  };
  // Causal conv ci -> co on an input that stays alive (`live` bytes).
  auto conv = [&](int64_t live, int64_t ci, int64_t co) {
    note(live + conv_bytes(ci, co));
    remember(ci);
  };
  auto residual = [&](int64_t ci, int64_t co) {
    const int64_t x = ci * t * a * e, skip = ci != co ? co * t * a * e : 0;
    note(x + skip + (ci * t + t) * a * e + conv_bytes(ci, co));
    note(x + skip + co * t * a * e + conv_bytes(co, co));
    remember(ci);
    remember(co);
  };
  auto attention = [&](int64_t ch) {
    note(ch * t * a * e * 10 + t * a * a * 4);  // + float32 logits if the math kernel runs
  };
  auto upsample = [&](int64_t ch, bool temporal) {
    int64_t t2 = t;
    if (temporal) {
      const int64_t rest = first ? t - 1 : t;
      t2 = 2 * rest + (first ? 1 : 0);
      note((ch * t + 2 * ch * (rest + 2) + 4 * ch * rest + ch * t2) * a * e);
      remember(ch);
    }
    const int64_t x = ch * t2 * a * e;
    note(x + 10 * x);  // input + resized + its copy for the conv + conv output + copy
    t = t2;
    a *= 4;
  };

  const size_t stages = c.dim_mult.size();
  std::vector<int64_t> dims = {c.dim * c.dim_mult.back()};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it) dims.push_back(c.dim * *it);
  // Trunk on the whole frame.
  note(3 * c.z_dim * t * a * e);  // latents: moved, de-normalised, conv2
  conv(c.z_dim * t * a * e, c.z_dim, dims[0]);
  residual(dims[0], dims[0]);
  attention(dims[0]);
  residual(dims[0], dims[0]);
  Cost cost;
  cost.trunk_cache = cache;
  const int64_t features = dims[0] * t * a * e;  // stays alive while the tiles run
  const int64_t trunk_peak = peak;
  // Branch on the tile.
  peak = 0;
  cache = 0;
  a = th * tw;
  for (size_t i = 0; i < stages; ++i) {
    int64_t in = i == 0 ? dims[0] : dims[i] / 2;
    for (int64_t r = 0; r <= c.num_res_blocks; ++r, in = dims[i + 1]) residual(in, dims[i + 1]);
    if (i + 1 < stages) upsample(dims[i + 1], c.temporal_downsample[stages - 2 - i]);
  }
  const int64_t ch = dims.back();
  conv(2 * ch * t * a * e, ch, 3);          // head: input + normalised copy
  note(3 * t * a * e + 2 * 3 * t * a * 4);  // output -> float32 -> contiguous
  cost.branch_cache = cache;
  cost.working = std::max(trunk_peak, features + peak) + largest_slot;
  return cost;
}

int64_t elem_size(at::ScalarType dtype) { return static_cast<int64_t>(c10::elementSize(dtype)); }

// Tiling of one axis of `n` latent pixels into `count` tiles overlapping by about `overlap`:
// the tile size that makes it so, and the evenly spread starts.
int64_t tile_size(int64_t n, int64_t count, int64_t overlap) {
  return count <= 1 ? n : (n + (count - 1) * overlap + count - 1) / count;
}
int64_t tile_count(int64_t n, int64_t tile, int64_t overlap) {
  if (tile >= n) return 1;
  if (tile <= overlap) return n;  // degenerate request; rejected by the caller's size checks
  return (n - overlap + (tile - overlap) - 1) / (tile - overlap);
}
std::vector<int64_t> tile_starts(int64_t n, int64_t tile, int64_t count) {
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < count; ++i)
    starts.push_back(count == 1 ? 0
                                : static_cast<int64_t>(std::llround(double(i) * double(n - tile) /
                                                                    double(count - 1))));
  return starts;
}

// Per-pixel weights along one axis of a tile: a linear ramp over the overlap with the previous
// tile, 1 inside, a ramp down over the overlap with the next one. Segments with weight 1 are
// copied, the rest blended.
struct AxisSegment {
  int64_t begin, length;
  at::Tensor weight;  // undefined for the interior (weight 1)
};
std::vector<AxisSegment> axis_segments(int64_t length, int64_t ramp_in, int64_t ramp_out,
                                       const at::TensorOptions& opts) {
  if (ramp_in + ramp_out > length)
    throw Error(fmt::format("Wan VAE export: tile of {} px with overlaps {} and {}", length,
                            ramp_in, ramp_out));
  std::vector<AxisSegment> segments;
  auto ramp = [&](int64_t n, bool up) {
    at::Tensor k = (at::arange(n, opts) + 0.5) / static_cast<double>(n);
    return up ? k : 1.0 - k;
  };
  if (ramp_in > 0) segments.push_back({0, ramp_in, ramp(ramp_in, true)});
  if (length - ramp_in - ramp_out > 0)
    segments.push_back({ramp_in, length - ramp_in - ramp_out, at::Tensor()});
  if (ramp_out > 0) segments.push_back({length - ramp_out, ramp_out, ramp(ramp_out, false)});
  return segments;
}

at::Tensor to_host(const at::Tensor& frames, bool pin) {
  if (frames.device().is_cpu()) return frames;
  at::Tensor host = at::empty(frames.sizes(), frames.options().device(at::kCPU).pinned_memory(pin));
  host.copy_(frames);  // blocking: the sink reads it right away
  return host;
}

}  // namespace

int64_t estimate_wan_vae_decode_bytes(const WanVaeConfig& config, int64_t latent_h,
                                      int64_t latent_w, int64_t latent_frames, at::ScalarType dtype,
                                      bool first_slice) {
  return decode_cost(config, latent_h, latent_w, latent_h, latent_w, latent_frames,
                     elem_size(dtype), first_slice)
      .total();
}

WanVaeExportPlan plan_wan_vae_export(const WanVaeConfig& config, int64_t latent_frames,
                                     int64_t latent_h, int64_t latent_w,
                                     const DecoderOptions& device,
                                     const WanVaeExportOptions& options) {
  const int64_t e = elem_size(device.dtype);
  const int64_t budget = options.memory_budget_bytes;
  const int64_t scale = config.spatial_scale();
  const int64_t ts = config.temporal_scale();
  // A pass over the whole frame: the larger of a first and a later slice.
  auto pass_cost = [&](int64_t th, int64_t tw, int64_t s) {
    return decode_cost(config, latent_h, latent_w, th, tw, s, e, s >= latent_frames);
  };
  WanVaeExportPlan plan;
  plan.tile_h = latent_h;
  plan.tile_w = latent_w;
  const int64_t wanted_slice = options.slice_latent_frames > 0
                                   ? options.slice_latent_frames
                                   : std::min<int64_t>(latent_frames, 3);
  const bool forced_tiles =
      options.tile_latent > 0 && options.tile_latent < std::max(latent_h, latent_w);
  if (!forced_tiles) {
    for (int64_t s = wanted_slice; s >= 1; --s) {
      plan.slice_latent_frames = s;
      plan.estimated_peak_bytes = pass_cost(latent_h, latent_w, s).total();
      if (budget == 0 || plan.estimated_peak_bytes <= budget) return plan;
      if (options.slice_latent_frames > 0) break;  // the caller fixed the slice
    }
  }
  // Tiles: one latent frame per slice unless fixed; the fewest tiles that fit. Tiles must stay
  // wider than two overlaps so that only neighbouring tiles ever share pixels.
  plan.slice_latent_frames = options.slice_latent_frames > 0 ? options.slice_latent_frames : 1;
  const int64_t s = plan.slice_latent_frames;
  const int64_t o = std::max<int64_t>(options.tile_overlap_latent, 0);
  const int64_t staging = 3 * ts * s * latent_h * scale * latent_w * scale * 4;
  const bool can_park = !device.device.is_cpu();
  // Overlaps come out between o and o + 2 (rounding); a tile holds one ramp per neighbour.
  auto wide_enough = [&](int64_t tile, int64_t count) {
    return count == 1 || tile >= (count == 2 ? o + 3 : 2 * o + 4);
  };
  auto fits = [&](int64_t ky, int64_t kx, WanVaeExportPlan& out) {
    const int64_t th = tile_size(latent_h, ky, o), tw = tile_size(latent_w, kx, o);
    if (!wide_enough(th, ky) || !wide_enough(tw, kx)) return false;
    const Cost cost = pass_cost(th, tw, s);
    out = WanVaeExportPlan{th, tw, ky, kx, s, false, cost.total(ky * kx) + staging};
    if (budget == 0 || out.estimated_peak_bytes <= budget) return true;
    if (can_park && cost.total(1) + staging <= budget) {
      out.park_tile_state = true;
      out.estimated_peak_bytes = cost.total(1) + staging;
      return true;
    }
    return false;
  };
  if (forced_tiles) {
    const int64_t ky = tile_count(latent_h, options.tile_latent, o);
    const int64_t kx = tile_count(latent_w, options.tile_latent, o);
    if (!wide_enough(tile_size(latent_h, ky, o), ky) ||
        !wide_enough(tile_size(latent_w, kx, o), kx))
      throw ConfigError(
          fmt::format("Wan VAE export: tiles of {} latent pixels cannot overlap by {}",
                      options.tile_latent, o));
    if (fits(ky, kx, plan)) return plan;
  } else {
    int64_t best = 0;
    WanVaeExportPlan candidate;
    for (int64_t ky = 1; ky <= latent_h; ++ky)
      for (int64_t kx = 1; kx <= latent_w; ++kx)
        if (ky * kx > 1 && (best == 0 || ky * kx < best) && fits(ky, kx, candidate)) {
          best = ky * kx;
          plan = candidate;
        }
    if (best > 0) return plan;
  }
  const int64_t best_fail = pass_cost(2 * o + 4, 2 * o + 4, s).total(1) + staging;
  throw ConfigError(fmt::format(
      "Wan VAE export: a memory budget of {:.1f} MiB is too small for a {}x{} latent video at {} "
      "(the smallest tiling needs about {:.1f} MiB); raise the budget",
      double(budget) / (1 << 20), latent_h, latent_w, c10::toString(device.dtype),
      double(best_fail) / (1 << 20)));
}

WanVaeExportPlan decode_wan_vae_video(const WanVaeDecoder& decoder, const at::Tensor& latents,
                                      const WanVaeExportOptions& options,
                                      const std::function<void(const at::Tensor&)>& sink) {
  const WanVaeConfig& config = decoder.config();
  if (latents.dim() != 5 || latents.size(0) != 1 || latents.size(2) != config.z_dim)
    throw ConfigError(
        fmt::format("Wan VAE export: latents have shape [{}], expected [1, T, {}, h, w]",
                    fmt::join(latents.sizes(), ", "), config.z_dim));
  const int64_t frames = latents.size(1), h = latents.size(3), w = latents.size(4);
  const WanVaeDecoderOptions& device = decoder.options();
  const WanVaeExportPlan plan = plan_wan_vae_export(config, frames, h, w, device, options);
  const bool pin = options.pin_host_memory && !device.device.is_cpu();
  const int64_t scale = config.spatial_scale();
  const auto ys = tile_starts(h, plan.tile_h, plan.tiles_y);
  const auto xs = tile_starts(w, plan.tile_w, plan.tiles_x);
  log::info(
      "Wan VAE export: {} latent frames of {}x{}, slices of {}, tiles {}x{} of {}x{}{}, "
      "planned {:.1f} MiB",
      frames, h, w, plan.slice_latent_frames, plan.tiles_y, plan.tiles_x, plan.tile_h, plan.tile_w,
      plan.park_tile_state ? " (caches parked on host)" : "",
      double(plan.estimated_peak_bytes) / (1 << 20));

  // One stream for the whole-frame trunk (and the whole decode when untiled), one per tile.
  WanVaeDecoder whole = decoder.fork();
  std::vector<WanVaeDecoder> streams;
  if (!plan.exact())
    for (size_t i = 0; i < ys.size() * xs.size(); ++i) streams.push_back(decoder.fork());
  const auto fopts = at::TensorOptions(at::kFloat).device(device.device);
  // Blend segments per tile row / column (pixels).
  auto segments = [&](const std::vector<int64_t>& starts, size_t i, int64_t tile) {
    const int64_t in = i > 0 ? starts[i - 1] + tile - starts[i] : 0;
    const int64_t out = i + 1 < starts.size() ? starts[i] + tile - starts[i + 1] : 0;
    return axis_segments(tile * scale, in * scale, out * scale, fopts);
  };

  for (int64_t begin = 0; begin < frames; begin += plan.slice_latent_frames) {
    const int64_t n = std::min(plan.slice_latent_frames, frames - begin);
    const at::Tensor slice = latents.narrow(1, begin, n);
    if (plan.exact()) {
      sink(to_host(whole.decode(slice), pin));
      continue;
    }
    const int64_t out_frames = decoder.frames_for(n, begin == 0);
    at::Tensor staging = at::zeros({out_frames, 3, h * scale, w * scale}, fopts);
    const at::Tensor features = whole.decode_trunk(slice);
    size_t k = 0;
    for (size_t iy = 0; iy < ys.size(); ++iy) {
      const auto rows = segments(ys, iy, plan.tile_h);
      for (size_t ix = 0; ix < xs.size(); ++ix, ++k) {
        const auto cols = segments(xs, ix, plan.tile_w);
        const at::Tensor tile =
            streams[k]
                .decode_branch(
                    features.narrow(3, ys[iy], plan.tile_h).narrow(4, xs[ix], plan.tile_w))
                .mul_(0.5)
                .add_(0.5);
        if (plan.park_tile_state) streams[k].move_state(at::kCPU, pin);
        const int64_t y0 = ys[iy] * scale, x0 = xs[ix] * scale;
        for (const auto& r : rows) {
          for (const auto& c : cols) {
            at::Tensor dst =
                staging.narrow(2, y0 + r.begin, r.length).narrow(3, x0 + c.begin, c.length);
            const at::Tensor src = tile.narrow(2, r.begin, r.length).narrow(3, c.begin, c.length);
            if (!r.weight.defined() && !c.weight.defined()) {
              dst.copy_(src);  // only this tile covers it
              continue;
            }
            const at::Tensor wy =
                r.weight.defined() ? r.weight.view({-1, 1}) : at::ones({1, 1}, fopts);
            const at::Tensor wx =
                c.weight.defined() ? c.weight.view({1, -1}) : at::ones({1, 1}, fopts);
            dst.addcmul_(src, wy * wx);
          }
        }
      }
    }
    sink(to_host(staging, pin));
  }
  return plan;
}

}  // namespace longlive
