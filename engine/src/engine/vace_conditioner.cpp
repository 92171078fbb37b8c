// VaceConditioner: control input -> VACE context -> StreamGenerator::set_vace, once per block.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"

namespace longlive {

VaceMode parse_vace_mode(const std::string& name) {
  if (name == "conditioning") return VaceMode::conditioning;
  if (name == "reference") return VaceMode::reference;
  if (name == "inpaint") return VaceMode::inpaint;
  throw ConfigError(
      fmt::format("VACE mode '{}' is unknown; expected conditioning, reference or inpaint", name));
}

std::string to_string(VaceMode mode) {
  switch (mode) {
    case VaceMode::conditioning:
      return "conditioning";
    case VaceMode::reference:
      return "reference";
    case VaceMode::inpaint:
      return "inpaint";
  }
  return "conditioning";
}

VaceConditioner::VaceConditioner(std::unique_ptr<VaceContextEncoder> encoder, VaceSettings settings,
                                 std::shared_ptr<VaceFrameSource> source)
    : encoder_(std::move(encoder)), settings_(std::move(settings)), source_(std::move(source)) {
  if (!encoder_) throw ConfigError("VACE: no context encoder (the Wan VAE encoder is needed)");
  const std::string mode = to_string(settings_.mode);
  const bool has_refs = settings_.references.defined() && settings_.references.size(0) > 0;
  if (settings_.mode != VaceMode::reference && !source_)
    throw ConfigError(fmt::format("VACE mode {} needs control frames (a video or a camera)", mode));
  if (settings_.mode == VaceMode::inpaint && !settings_.mask.defined())
    throw ConfigError("VACE mode inpaint needs a mask (white = generate, black = keep)");
  if (settings_.mode == VaceMode::reference && !has_refs)
    throw ConfigError("VACE mode reference needs at least one reference image");
}

VaceConditioner::~VaceConditioner() = default;

void VaceConditioner::reset() {
  encoder_->reset();
  blocks_ = 0;
}

void VaceConditioner::before_block(StreamGenerator& generator) {
  const int64_t latent_frames = generator.options().frames_per_block;
  if (settings_.mode == VaceMode::reference) {
    if (!reference_context_.defined())
      reference_context_ = encoder_->encode_references(settings_.references);
    generator.set_vace(VaceInput{reference_context_, settings_.scale});
    ++blocks_;
    return;
  }
  // The first block of a video starts with a frame of its own (the causal VAE's first frame).
  const int64_t ts = encoder_->temporal_scale();
  const int64_t count = blocks_ == 0 ? 1 + ts * (latent_frames - 1) : ts * latent_frames;
  const at::Tensor frames = source_->next_frames(count);
  if (frames.dim() != 4 || frames.size(0) != count)
    throw Error(fmt::format("VACE: the control source gave [{}] for {} frames",
                            fmt::join(frames.sizes(), ", "), count));
  at::Tensor mask;  // undefined: all ones (conditioning)
  if (settings_.mode == VaceMode::inpaint) {
    mask = settings_.mask.dim() == 2
               ? settings_.mask.unsqueeze(0).expand({count, frames.size(2), frames.size(3)})
               : settings_.mask;
  }
  const at::Tensor context = encoder_->encode(frames, mask, settings_.references);
  generator.set_vace(VaceInput{context, settings_.scale});
  ++blocks_;
}

struct VideoToVideoState {
  WanVaeEncoder::Stream stream;
};

VideoToVideo::VideoToVideo(std::unique_ptr<WanVaeEncoder> encoder, double strength,
                           std::shared_ptr<VaceFrameSource> source)
    : encoder_(std::move(encoder)),
      state_(std::make_unique<VideoToVideoState>()),
      strength_(strength),
      source_(std::move(source)) {
  if (!encoder_) throw ConfigError("video-to-video: no Wan VAE encoder");
  if (!source_) throw ConfigError("video-to-video needs input frames (a video or a camera)");
  if (!(strength_ > 0.0 && strength_ <= 1.0))
    throw ConfigError(fmt::format("video-to-video strength {} must be in (0, 1]", strength_));
}

VideoToVideo::~VideoToVideo() = default;

void VideoToVideo::reset() {
  state_->stream.reset();
  blocks_ = 0;
}

void VideoToVideo::before_block(StreamGenerator& generator) {
  const int64_t latent_frames = generator.options().frames_per_block;
  const int64_t ts = encoder_->config().temporal_scale();
  const int64_t count = blocks_ == 0 ? 1 + ts * (latent_frames - 1) : ts * latent_frames;
  const at::Tensor frames = source_->next_frames(count);  // [T, 3, H, W]
  const at::Tensor latents = encoder_->encode_next(frames.unsqueeze(0), state_->stream);
  generator.set_v2v(V2vInput{latents, strength_});
  ++blocks_;
}

}  // namespace longlive
