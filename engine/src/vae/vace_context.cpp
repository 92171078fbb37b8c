#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "longlive/error.h"
#include "longlive/taehv.h"
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

// ---- BlackInactiveLatents -----------------------------------------------------------------------

struct BlackInactiveLatents::Impl {
  struct Block {
    int64_t frames = 0;  // control frames encoded
    at::Tensor latents;  // [z, F, h, w]
  };
  // One frame size's black video: its blocks so far, and the stream's memory after the last
  // one until an encode leaves it unchanged (the fixed point: the last block repeats).
  struct Track {
    std::vector<Block> blocks;
    std::optional<WanVaeEncoder::Stream> stream;
    bool fixed = false;
    int64_t probes = 0;
  };
  mutable std::mutex mutex;
  std::pair<int64_t, int64_t> size{-1, -1};  // the one frame size kept (a new one replaces it)
  Track track;

  struct Found {
    at::Tensor latents;
    bool encoded = false;  // by this call (the next block of the record)
    bool fixed = false;    // the record's memory no longer changes from this block on
  };
  // Block `index` of the black video (blocks before it of the recorded counts, this one of
  // `zeros`' count [1, T, 3, H, W]): recorded, or encoded and recorded when it is the next.
  // nullopt when the record cannot say (another count or size than recorded).
  std::optional<Found> block(int64_t index, const at::Tensor& zeros, WanVaeEncoder& encoder) {
    const std::lock_guard lock(mutex);
    const int64_t frames = zeros.size(1), height = zeros.size(3), width = zeros.size(4);
    if (size != std::pair{height, width}) {
      if (index != 0) return std::nullopt;  // a size met mid-video: not recorded from its start
      size = {height, width};
      track = Track{};
    }
    const auto recorded = static_cast<int64_t>(track.blocks.size());
    if (index < recorded) {
      const Block& b = track.blocks[size_t(index)];
      if (b.frames != frames) return std::nullopt;
      return Found{b.latents, false, track.fixed && index + 1 == recorded};
    }
    if (track.fixed) {
      if (frames != track.blocks.back().frames) return std::nullopt;
      return Found{track.blocks.back().latents, false, true};
    }
    if (index > recorded) return std::nullopt;  // an encoder that skipped blocks (not expected)
    if (!track.stream) track.stream.emplace();
    WanVaeEncoder::Stream& stream = *track.stream;
    const bool probe = stream.started() && track.probes < VaceContextEncoder::kFixedPointProbes;
    stream.track_changes(probe);
    at::Tensor latents;
    try {
      latents = encoder.encode_next(zeros, stream)[0].permute({1, 0, 2, 3});
    } catch (...) {
      // The stream's memory may be half updated (out of memory mid-encode): start the record
      // over rather than encode its next block from that memory.
      size = {-1, -1};
      track = Track{};
      throw;
    }
    if (probe) {
      ++track.probes;
      track.fixed = !stream.changed();
    }
    stream.track_changes(false);
    track.blocks.push_back({frames, latents});
    if (track.fixed) track.stream.reset();  // the memory is no longer needed
    return Found{latents, true, track.fixed};
  }
};

BlackInactiveLatents::BlackInactiveLatents() : impl_(std::make_unique<Impl>()) {}
BlackInactiveLatents::~BlackInactiveLatents() = default;

int64_t BlackInactiveLatents::blocks(int64_t height, int64_t width) const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->size == std::pair{height, width} ? static_cast<int64_t>(impl_->track.blocks.size())
                                                 : 0;
}

bool BlackInactiveLatents::at_fixed_point(int64_t height, int64_t width) const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->size == std::pair{height, width} && impl_->track.fixed;
}

// ---- VaceContextEncoder -------------------------------------------------------------------------

struct VaceContextEncoder::Impl {
  explicit Impl(WanVaeEncoder built) : encoder(std::move(built)) {}
  explicit Impl(std::shared_ptr<const TaehvEncoder> built) : tae(std::move(built)) {}
  // The Wan VAE's encoder (the reference's), or TAEHV's (tae set; `encoder` then unused).
  std::optional<WanVaeEncoder> encoder;
  WanVaeEncoder::Stream inactive, reactive;
  std::shared_ptr<const TaehvEncoder> tae;
  TaehvEncoder::Stream tae_inactive, tae_reactive;
  at::Tensor last_inactive, last_reactive;
  // The inactive stream under black frames: at a fixed point (its last latents repeat for as
  // many frames). Its memory converges there as the first frame's effect fades through the
  // temporal down-sampler's memory.
  bool reuse_fixed_inactive = true;
  int64_t frame_groups = 0;  // per pass for the input's frames (set_frame_groups_per_pass)
  bool inactive_fixed = false;
  int64_t inactive_fixed_frames = 0;  // control frames of the encode that found it
  int64_t probes = 0;
  int64_t skipped = 0;
  // Black inactive blocks from the shared record: while on it, this encoder's own inactive stream
  // is unused and the record's stands for it, `record_blocks` blocks into the video.
  std::shared_ptr<BlackInactiveLatents> record;
  bool on_record = true;
  int64_t record_blocks = 0;
  std::vector<int64_t> record_counts;  // frames of the blocks taken, up to the fixed point
  bool record_past_fixed = false;
  int64_t from_record = 0;

  // A block encoded in parts (begin_parts .. end_parts).
  struct Parts {
    bool open = false;
    int64_t count = 0, received = 0;
    std::vector<at::Tensor> reactive;  // [z, f, h, w] per part
    at::TensorOptions pixels;
    int64_t height = 0, width = 0;
  } parts;

  bool reactive_started() const { return tae ? tae_reactive.started() : reactive.started(); }
  // Frames [T, 3, H, W] in [-1, 1] continuing a stream (the Wan VAE's or TAEHV's, whichever this
  // encoder runs) -> [z, F, h, w]. TAEHV takes [0, 1] and all T frames (padded at the end to
  // whole groups of 4); `groups` per pass, as the Wan VAE's.
  at::Tensor encode_stream(const at::Tensor& frames, WanVaeEncoder::Stream& wan,
                           TaehvEncoder::Stream& taehv, int64_t groups) {
    if (tae) return encode_taehv(frames, taehv, groups);
    return encoder->encode_next(frames.unsqueeze(0), wan, groups)[0].permute({1, 0, 2, 3});
  }
  // TAEHV's half of it, for a stream's memory or a fresh one (inpainting, reference images).
  at::Tensor encode_taehv(const at::Tensor& frames, TaehvEncoder::Stream& stream,
                          int64_t groups) const {
    return tae->encode_next((frames + 1) * 0.5, stream, groups * TaehvEncoder::kTimeDownscale)
        .permute({1, 0, 2, 3});
  }
  // Each image [N, 3, H, W] alone (a fresh memory), as the reference does -> [z, N, h, w].
  at::Tensor encode_each(const at::Tensor& images);

  void forget_fixed_point() {
    inactive_fixed = false;
    probes = 0;
  }

  // The block's inactive latents -> last_inactive: `frames` [T, 3, H, W] on the encoder's device
  // (black: zeros, the conditioning mode's), from the shared record, the fixed point or encoded.
  void encode_inactive(const at::Tensor& frames, bool black);
  void encode_inactive_taehv(const at::Tensor& frames, bool black);  // its TAEHV half
  // last_inactive, last_reactive, the references in front and the mask [T, H, W] -> the context.
  at::Tensor context(const at::Tensor& mask, const at::Tensor& references);

  void restart_on_record() {
    on_record = true;
    record_blocks = 0;
    record_counts.clear();
    record_past_fixed = false;
  }

  // Leaves the record: the own inactive stream encodes the black blocks taken from it (past the
  // fixed point the memory no longer changes), so it goes on as if it had encoded them itself.
  void leave_record(const at::TensorOptions& pixels, int64_t height, int64_t width) {
    on_record = false;
    inactive.reset();
    forget_fixed_point();
    for (const int64_t frames : record_counts)
      encoder->encode_next(at::zeros({1, frames, 3, height, width}, pixels), inactive);
    record_counts.clear();
  }
};

VaceContextEncoder::VaceContextEncoder(const WeightStore& vae, const WanVaeEncoderOptions& options)
    : VaceContextEncoder(WanVaeEncoder(vae, options)) {}

VaceContextEncoder::VaceContextEncoder(WanVaeEncoder encoder)
    : impl_(std::make_unique<Impl>(std::move(encoder))) {}
VaceContextEncoder::VaceContextEncoder(std::shared_ptr<const TaehvEncoder> encoder)
    : impl_(std::make_unique<Impl>(std::move(encoder))) {
  if (!impl_->tae) throw ConfigError("VACE: a TAEHV context encoder without its encoder");
  impl_->record.reset();  // the black record holds the Wan VAE's latents
  impl_->on_record = false;
}
VaceContextEncoder::~VaceContextEncoder() = default;
VaceContextEncoder::VaceContextEncoder(VaceContextEncoder&&) noexcept = default;
VaceContextEncoder& VaceContextEncoder::operator=(VaceContextEncoder&&) noexcept = default;

void VaceContextEncoder::reset() {
  impl_->inactive.reset();
  impl_->reactive.reset();
  impl_->tae_inactive.reset();
  impl_->tae_reactive.reset();
  impl_->forget_fixed_point();
  impl_->restart_on_record();
  impl_->parts = {};
}

void VaceContextEncoder::share_black_inactive(std::shared_ptr<BlackInactiveLatents> record) {
  if (impl_->tae) return;  // TAEHV's black blocks are not the record's (Wan VAE) latents
  impl_->record = std::move(record);
  impl_->restart_on_record();
  // Only from a video's start: mid-video the own stream already holds what it encoded.
  impl_->on_record = !impl_->inactive.started();
}

int64_t VaceContextEncoder::inactive_blocks_from_record() const { return impl_->from_record; }

void VaceContextEncoder::set_reuse_fixed_inactive(bool on) {
  impl_->reuse_fixed_inactive = on;
  impl_->forget_fixed_point();
}
int64_t VaceContextEncoder::inactive_encodes_skipped() const { return impl_->skipped; }

void VaceContextEncoder::set_frame_groups_per_pass(int64_t groups) {
  if (groups < 0)
    throw ConfigError(fmt::format("VACE: {} groups of frames per encoder pass", groups));
  impl_->frame_groups = groups;
}

int64_t VaceContextEncoder::temporal_scale() const {
  return impl_->tae ? TaehvEncoder::kTimeDownscale : impl_->encoder->config().temporal_scale();
}

at::Device VaceContextEncoder::device() const {
  return impl_->tae ? impl_->tae->device() : impl_->encoder->device();
}

bool VaceContextEncoder::runs_taehv() const { return impl_->tae != nullptr; }

const at::Tensor& VaceContextEncoder::last_inactive() const { return impl_->last_inactive; }
const at::Tensor& VaceContextEncoder::last_reactive() const { return impl_->last_reactive; }

namespace {

void check_images(const at::Tensor& images, const char* what) {
  if (images.dim() != 4 || images.size(1) != 3)
    throw ConfigError(fmt::format("VACE {} have shape [{}], expected [N, 3, H, W] in [-1, 1]", what,
                                  fmt::join(images.sizes(), ", ")));
}

}  // namespace

at::Tensor VaceContextEncoder::Impl::encode_each(const at::Tensor& images) {
  std::vector<at::Tensor> latents;
  for (int64_t i = 0; i < images.size(0); ++i) {
    const at::Tensor image = images.narrow(0, i, 1);
    if (tae) {
      TaehvEncoder::Stream fresh;  // one image: padded to a group of 4 copies, one latent frame
      latents.push_back(encode_taehv(image, fresh, 0));  // [z, 1, h, w]
    } else {
      latents.push_back(encoder->encode(image.unsqueeze(0))[0].permute({1, 0, 2, 3}));
    }
  }
  return at::cat(latents, 1);
}

void VaceContextEncoder::Impl::encode_inactive(const at::Tensor& frames, bool black) {
  if (tae) {
    encode_inactive_taehv(frames, black);
    return;
  }
  const int64_t t = frames.size(0), height = frames.size(2), width = frames.size(3);
  // The shared record of black inactive blocks, while this video's blocks match it.
  std::optional<BlackInactiveLatents::Impl::Found> recorded;
  if (record && on_record) {
    if (black && reuse_fixed_inactive)
      recorded = record->impl_->block(record_blocks, frames.unsqueeze(0), *encoder);
    if (recorded) {
      ++record_blocks;
      if (!recorded->encoded) ++from_record;
      if (!record_past_fixed) record_counts.push_back(t);
      record_past_fixed = record_past_fixed || recorded->fixed;
    } else {
      leave_record(frames.options(), height, width);
    }
  }
  // [1, T, 3, H, W] -> [1, F, z, h, w] -> [z, F, h, w]
  // Black inactive frames at the stream's fixed point: the encode would repeat its last latents
  // exactly (same input, same memory, a deterministic function of both), so they are reused.
  if (!black || !reuse_fixed_inactive) forget_fixed_point();
  if (recorded) {
    last_inactive = recorded->latents;
  } else if (black && inactive_fixed && inactive_fixed_frames == t) {
    ++skipped;
  } else {
    const bool probe =
        black && reuse_fixed_inactive && inactive.started() && probes < kFixedPointProbes;
    inactive.track_changes(probe);
    last_inactive = encode_stream(frames, inactive, tae_inactive, black ? 0 : frame_groups);
    if (probe) {
      ++probes;
      inactive_fixed = !inactive.changed();
      inactive_fixed_frames = t;
    }
    inactive.track_changes(false);
  }
}

// TAEHV: no shared record (it holds the Wan VAE's latents), but the same fixed point. A memory
// block sees its input and the one before only, so black frames bring the memory to a state an
// encode no longer changes, exactly, within a few blocks; from then on the block's latents repeat
// and are reused (checked by comparing the memory before and after, on at most
// kFixedPointProbes encodes, until the input changes).
void VaceContextEncoder::Impl::encode_inactive_taehv(const at::Tensor& frames, bool black) {
  const int64_t t = frames.size(0);
  if (!black || !reuse_fixed_inactive) forget_fixed_point();
  if (black && inactive_fixed && inactive_fixed_frames == t) {
    ++skipped;
    return;
  }
  const bool probe =
      black && reuse_fixed_inactive && tae_inactive.started() && probes < kFixedPointProbes;
  // The encode puts new tensors in the memory's places: these stay what it was.
  const std::vector<at::Tensor> before = probe ? tae_inactive.past : std::vector<at::Tensor>{};
  last_inactive = encode_stream(frames, inactive, tae_inactive, black ? 0 : frame_groups);
  if (!probe) return;
  ++probes;
  inactive_fixed = std::equal(before.begin(), before.end(), tae_inactive.past.begin(),
                              [](const at::Tensor& a, const at::Tensor& b) { return a.equal(b); });
  inactive_fixed_frames = t;
}

at::Tensor VaceContextEncoder::Impl::context(const at::Tensor& mask, const at::Tensor& references) {
  at::Tensor latents = at::cat({last_inactive, last_reactive}, 0);
  const int64_t refs = references.defined() ? references.size(0) : 0;
  if (refs > 0) {
    check_images(references, "reference images");
    const at::Tensor ref = encode_each(references);
    latents = at::cat({at::cat({ref, at::zeros_like(ref)}, 0), latents}, 1);
  }
  return vace_context(latents, vace_mask_latent(mask, refs));
}

at::Tensor VaceContextEncoder::encode(const at::Tensor& frames, const at::Tensor& mask,
                                      const at::Tensor& references) {
  check_images(frames, "control frames");
  if (impl_->parts.open)
    throw Error("VACE: encode() while a block is encoded in parts (end_parts first)");
  const int64_t t = frames.size(0), height = frames.size(2), width = frames.size(3);
  // The frames go to the encoder's device once, and the mask's arithmetic runs there: on a GPU
  // the host neither multiplies nor uploads the inactive and reactive frames (the same values:
  // products with 0 and 1, zeros, copies).
  const at::Tensor pixels = frames.to(device(), at::kFloat);
  at::Tensor m = mask.defined() ? mask : at::ones({t, height, width}, pixels.options());
  if (m.dim() == 4 && m.size(0) == 1) m = m[0];
  if (m.dim() != 3 || m.size(0) != t || m.size(1) != height || m.size(2) != width)
    throw ConfigError(fmt::format("VACE mask has shape [{}], expected [{}, {}, {}] (one per frame)",
                                  fmt::join(mask.sizes(), ", "), t, height, width));
  m = vace_binarize_mask(m).to(pixels.device());
  // An all-ones mask (conditioning) leaves the inactive frames black: zeros, the same input
  // block after block (pixels * 0 would differ from it only in the signs of zeros), and the
  // reactive frames the frames themselves.
  Impl& s = *impl_;
  const bool black = !mask.defined() || m.min().item<float>() >= 1;
  s.encode_inactive(black ? at::zeros_like(pixels) : pixels * (1 - m).unsqueeze(1), black);
  const at::Tensor reactive = mask.defined() ? pixels * m.unsqueeze(1) : pixels;
  const int64_t ts = temporal_scale();
  // What a fresh Wan VAE cache takes of the block (1 + k groups); TAEHV takes every frame (its
  // first block's 1 + 2 * 4 padded at the end to 3 * 4), the same latent count.
  const int64_t whole_groups = s.tae ? t : 1 + ts * ((t - 1) / ts);
  if (black) {
    // A reactive stream not started yet (the blocks before were inpainted) starts with this block
    // as a fresh cache takes it: a stream's first call is 1 + k groups.
    const at::Tensor streamed =
        s.reactive_started() ? reactive : reactive.narrow(0, 0, whole_groups);
    s.last_reactive = s.encode_stream(streamed, s.reactive, s.tae_reactive, s.frame_groups);
  } else if (s.tae) {
    TaehvEncoder::Stream fresh;  // inpainting: each block's reactive frames alone, as below
    s.last_reactive = s.encode_taehv(reactive, fresh, s.frame_groups);
  } else {
    // Inpainting (a mask that is not all ones): the reference (Scope's vace_encode_frames) encodes
    // the reactive frames of each block as a video of their own, with a fresh causal cache, to
    // weaken their temporal blending: the first frame alone, then whole groups of
    // temporal_scale frames (a later block's last frames past them are not used; the latent
    // count is the streaming one). The reactive stream is left where it was.
    s.last_reactive =
        s.encoder->encode(reactive.narrow(0, 0, whole_groups).unsqueeze(0), s.frame_groups)[0]
            .permute({1, 0, 2, 3});
  }
  return s.context(m, references);
}

void VaceContextEncoder::begin_parts(int64_t count) {
  Impl& s = *impl_;
  const int64_t ts = temporal_scale();
  if (!s.reactive_started() || count < ts || count % ts != 0)
    throw ConfigError(fmt::format(
        "VACE: a block of {} control frames cannot be encoded in parts (past a video's first "
        "block only, whole groups of {} frames)",
        count, ts));
  s.parts = {};
  s.parts.open = true;
  s.parts.count = count;
}

void VaceContextEncoder::encode_part(const at::Tensor& frames) {
  check_images(frames, "control frames");
  Impl& s = *impl_;
  Impl::Parts& p = s.parts;
  const int64_t n = frames.size(0), ts = temporal_scale();
  if (!p.open || n % ts != 0 || p.received + n > p.count ||
      (p.received > 0 && (frames.size(2) != p.height || frames.size(3) != p.width)))
    throw ConfigError(fmt::format(
        "VACE: a part of [{}] control frames does not continue the block begun ({} of {} "
        "frames received, parts of {} frames{})",
        fmt::join(frames.sizes(), ", "), p.received, p.count, ts,
        p.received > 0 ? fmt::format(" at {}x{}", p.width, p.height) : std::string()));
  const at::Tensor pixels = frames.to(device(), at::kFloat);
  if (p.received == 0) {
    p.pixels = pixels.options();
    p.height = frames.size(2);
    p.width = frames.size(3);
    // The conditioning mode's inactive frames are black: known before the block is filmed.
    s.encode_inactive(at::zeros({p.count, 3, p.height, p.width}, p.pixels), true);
  }
  p.reactive.push_back(s.encode_stream(pixels, s.reactive, s.tae_reactive, s.frame_groups));
  p.received += n;
}

at::Tensor VaceContextEncoder::end_parts(const at::Tensor& references) {
  Impl& s = *impl_;
  Impl::Parts p = std::exchange(s.parts, Impl::Parts{});
  if (!p.open || p.received != p.count)
    throw ConfigError(fmt::format("VACE: a block encoded in parts ended with {} of its {} frames",
                                  p.received, p.count));
  s.last_reactive = p.reactive.size() == 1 ? p.reactive[0] : at::cat(p.reactive, 1);
  return s.context(at::ones({p.count, p.height, p.width}, p.pixels), references);
}

at::Tensor VaceContextEncoder::encode_references(const at::Tensor& references) {
  check_images(references, "reference images");
  const at::Tensor ref = impl_->encode_each(references);
  return at::constant_pad_nd(ref, {0, 0, 0, 0, 0, 0, 0, channels() - ref.size(0)}).contiguous();
}

}  // namespace longlive
