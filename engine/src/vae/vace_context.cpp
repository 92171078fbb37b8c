#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "longlive/error.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"

namespace longlive {

at::Tensor vace_binarize_mask(const at::Tensor& mask) {
  return (mask.to(at::kFloat) > 0.5).to(at::kFloat);
}

at::Tensor vace_mask_latent(const at::Tensor& mask, int64_t references,
                            const std::array<int64_t, 3>& stride) {
  const at::Tensor m = mask.dim() == 4 && mask.size(0) == 1 ? mask[0] : mask;
  const auto [st, sh, sw] = stride;
  if (m.dim() != 3 || m.size(0) < 1 || m.size(1) % (2 * sh) != 0 || m.size(2) % (2 * sw) != 0 ||
      references < 0)
    throw ConfigError(fmt::format(
        "VACE mask has shape [{}], expected [T, H, W] with H a multiple of {} and W of {}",
        fmt::join(mask.sizes(), ", "), 2 * sh, 2 * sw));
  const int64_t t = m.size(0), h = m.size(1) / sh, w = m.size(2) / sw;
  const int64_t latent_t = (t + st - 1) / st;
  // Each sh x sw pixel block becomes sh * sw channels (row within the block first).
  const at::Tensor blocks = m.to(at::kFloat)
                                .reshape({t, h, sh, w, sw})
                                .permute({2, 4, 0, 1, 3})
                                .reshape({1, sh * sw, t, h, w});
  at::Tensor out = at::_upsample_nearest_exact3d(blocks, {latent_t, h, w}, std::nullopt,
                                                 std::nullopt, std::nullopt)[0];
  if (references > 0)
    out = at::cat({at::zeros({sh * sw, references, h, w}, out.options()), out}, 1);
  return out.contiguous();
}

at::Tensor vace_context(const at::Tensor& latents, const at::Tensor& mask_latent) {
  if (latents.dim() != 4 || mask_latent.dim() != 4 || latents.size(1) != mask_latent.size(1) ||
      latents.size(2) != mask_latent.size(2) || latents.size(3) != mask_latent.size(3))
    throw ConfigError(fmt::format(
        "VACE context: latents [{}] and mask latent [{}] must be [C, F, h, w] of the same F, h, w",
        fmt::join(latents.sizes(), ", "), fmt::join(mask_latent.sizes(), ", ")));
  return at::cat({latents.to(at::kFloat), mask_latent.to(latents.device(), at::kFloat)}, 0)
      .contiguous();
}

struct VaceContextEncoder::Impl {
  WanVaeEncoder encoder;
  WanVaeEncoder::Stream inactive, reactive;
  at::Tensor last_inactive, last_reactive;
  at::Device device;
  // The inactive stream under black frames: at a fixed point (its last latents repeat for as
  // many frames). Its memory converges there as the first frame's effect fades through the
  // temporal down-sampler's memory.
  bool reuse_fixed_inactive = true;
  bool inactive_fixed = false;
  int64_t inactive_fixed_frames = 0;  // control frames of the encode that found it
  int64_t probes = 0;
  int64_t skipped = 0;

  void forget_fixed_point() {
    inactive_fixed = false;
    probes = 0;
  }
};

VaceContextEncoder::VaceContextEncoder(const WeightStore& vae, const WanVaeEncoderOptions& options)
    : impl_(std::make_unique<Impl>(Impl{.encoder = WanVaeEncoder(vae, options),
                                        .inactive = {},
                                        .reactive = {},
                                        .last_inactive = {},
                                        .last_reactive = {},
                                        .device = options.device})) {}
VaceContextEncoder::~VaceContextEncoder() = default;
VaceContextEncoder::VaceContextEncoder(VaceContextEncoder&&) noexcept = default;
VaceContextEncoder& VaceContextEncoder::operator=(VaceContextEncoder&&) noexcept = default;

void VaceContextEncoder::reset() {
  impl_->inactive.reset();
  impl_->reactive.reset();
  impl_->forget_fixed_point();
}

void VaceContextEncoder::set_reuse_fixed_inactive(bool on) {
  impl_->reuse_fixed_inactive = on;
  impl_->forget_fixed_point();
}
int64_t VaceContextEncoder::inactive_encodes_skipped() const { return impl_->skipped; }

int64_t VaceContextEncoder::temporal_scale() const {
  return impl_->encoder.config().temporal_scale();
}

at::Device VaceContextEncoder::device() const { return impl_->device; }

const at::Tensor& VaceContextEncoder::last_inactive() const { return impl_->last_inactive; }
const at::Tensor& VaceContextEncoder::last_reactive() const { return impl_->last_reactive; }

namespace {

void check_images(const at::Tensor& images, const char* what) {
  if (images.dim() != 4 || images.size(1) != 3)
    throw ConfigError(fmt::format("VACE {} have shape [{}], expected [N, 3, H, W] in [-1, 1]", what,
                                  fmt::join(images.sizes(), ", ")));
}

// [N, 3, H, W] -> [z, N, h, w]: each image encoded alone (a fresh cache), as the reference does.
at::Tensor encode_each(WanVaeEncoder& encoder, const at::Tensor& images) {
  std::vector<at::Tensor> latents;
  for (int64_t i = 0; i < images.size(0); ++i)
    latents.push_back(encoder.encode(images.narrow(0, i, 1).unsqueeze(0))[0]);  // [1, z, h, w]
  return at::cat(latents, 0).permute({1, 0, 2, 3});
}

}  // namespace

at::Tensor VaceContextEncoder::encode(const at::Tensor& frames, const at::Tensor& mask,
                                      const at::Tensor& references) {
  check_images(frames, "control frames");
  const int64_t t = frames.size(0), height = frames.size(2), width = frames.size(3);
  at::Tensor m = mask.defined() ? mask : at::ones({t, height, width});
  if (m.dim() == 4 && m.size(0) == 1) m = m[0];
  if (m.dim() != 3 || m.size(0) != t || m.size(1) != height || m.size(2) != width)
    throw ConfigError(fmt::format("VACE mask has shape [{}], expected [{}, {}, {}] (one per frame)",
                                  fmt::join(mask.sizes(), ", "), t, height, width));
  m = vace_binarize_mask(m).to(frames.device());
  const at::Tensor pixels = frames.to(at::kFloat);
  // An all-ones mask (conditioning) leaves the inactive frames black: zeros, the same input
  // block after block (pixels * 0 would differ from it only in the signs of zeros).
  Impl& s = *impl_;
  const bool black = !mask.defined() || m.min().item<float>() >= 1;
  const at::Tensor inactive = black ? at::zeros_like(pixels) : pixels * (1 - m).unsqueeze(1);
  const at::Tensor reactive = pixels * m.unsqueeze(1);
  // [1, T, 3, H, W] -> [1, F, z, h, w] -> [z, F, h, w]
  // Black inactive frames at the stream's fixed point: the encode would repeat its last latents
  // exactly (same input, same memory, a deterministic function of both), so they are reused.
  if (!black || !s.reuse_fixed_inactive) s.forget_fixed_point();
  if (black && s.inactive_fixed && s.inactive_fixed_frames == t) {
    ++s.skipped;
  } else {
    const bool probe =
        black && s.reuse_fixed_inactive && s.inactive.started() && s.probes < kFixedPointProbes;
    s.inactive.track_changes(probe);
    s.last_inactive =
        s.encoder.encode_next(inactive.unsqueeze(0), s.inactive)[0].permute({1, 0, 2, 3});
    if (probe) {
      ++s.probes;
      s.inactive_fixed = !s.inactive.changed();
      s.inactive_fixed_frames = t;
    }
    s.inactive.track_changes(false);
  }
  const int64_t ts = temporal_scale();
  const int64_t whole_groups = 1 + ts * ((t - 1) / ts);  // what a fresh cache takes of the block
  if (black) {
    // A reactive stream not started yet (the blocks before were inpainted) starts with this block
    // as a fresh cache takes it: a stream's first call is 1 + k groups.
    const at::Tensor streamed =
        impl_->reactive.started() ? reactive : reactive.narrow(0, 0, whole_groups);
    impl_->last_reactive =
        impl_->encoder.encode_next(streamed.unsqueeze(0), impl_->reactive)[0].permute({1, 0, 2, 3});
  } else {
    // Inpainting (a mask that is not all ones): the reference (Scope's vace_encode_frames) encodes
    // the reactive frames of each block as a video of their own, with a fresh causal cache, to
    // weaken their temporal blending: the first frame alone, then whole groups of
    // temporal_scale frames (a later block's last frames past them are not used; the latent
    // count is the streaming one). The reactive stream is left where it was.
    impl_->last_reactive =
        impl_->encoder.encode(reactive.narrow(0, 0, whole_groups).unsqueeze(0))[0].permute(
            {1, 0, 2, 3});
  }
  at::Tensor latents = at::cat({impl_->last_inactive, impl_->last_reactive}, 0);
  const int64_t refs = references.defined() ? references.size(0) : 0;
  if (refs > 0) {
    check_images(references, "reference images");
    const at::Tensor ref = encode_each(impl_->encoder, references);
    latents = at::cat({at::cat({ref, at::zeros_like(ref)}, 0), latents}, 1);
  }
  return vace_context(latents, vace_mask_latent(m, refs));
}

at::Tensor VaceContextEncoder::encode_references(const at::Tensor& references) {
  check_images(references, "reference images");
  const at::Tensor ref = encode_each(impl_->encoder, references);
  return at::constant_pad_nd(ref, {0, 0, 0, 0, 0, 0, 0, channels() - ref.size(0)}).contiguous();
}

}  // namespace longlive
