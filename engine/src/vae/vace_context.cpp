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
};

VaceContextEncoder::VaceContextEncoder(const WeightStore& vae, const DecoderOptions& options)
    : impl_(std::make_unique<Impl>(
          Impl{WanVaeEncoder(vae, options), {}, {}, {}, {}, options.device})) {}
VaceContextEncoder::~VaceContextEncoder() = default;
VaceContextEncoder::VaceContextEncoder(VaceContextEncoder&&) noexcept = default;
VaceContextEncoder& VaceContextEncoder::operator=(VaceContextEncoder&&) noexcept = default;

void VaceContextEncoder::reset() {
  impl_->inactive.reset();
  impl_->reactive.reset();
}

int64_t VaceContextEncoder::temporal_scale() const {
  return impl_->encoder.config().temporal_scale();
}

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
  const at::Tensor keep = (1 - m).unsqueeze(1);  // [T, 1, H, W]
  const at::Tensor inactive = pixels * keep;
  const at::Tensor reactive = pixels * m.unsqueeze(1);
  // [1, T, 3, H, W] -> [1, F, z, h, w] -> [z, F, h, w]
  impl_->last_inactive =
      impl_->encoder.encode_next(inactive.unsqueeze(0), impl_->inactive)[0].permute({1, 0, 2, 3});
  impl_->last_reactive =
      impl_->encoder.encode_next(reactive.unsqueeze(0), impl_->reactive)[0].permute({1, 0, 2, 3});
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
