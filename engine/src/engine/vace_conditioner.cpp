// VaceConditioner: control input -> VACE context -> StreamGenerator::set_vace, once per block.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "encode_ahead.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "longlive/taehv.h"
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
                                 std::shared_ptr<VaceFrameSource> source,
                                 std::shared_ptr<EncodeWorker> worker)
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
  // A camera's blocks a group of frames per pass, read whole or in parts (VaceFrameSource::filmed).
  if (source_ && source_->filmed()) encoder_->set_frame_groups_per_pass(1);
  ahead_ = std::make_unique<EncodeAhead>(encoder_->device(), std::move(worker));
}

VaceConditioner::~VaceConditioner() = default;

void VaceConditioner::reset() {
  ahead_->drop();  // its encode used the streaming caches emptied here
  encoder_->reset();
  last_context_ = at::Tensor();
  blocks_ = 0;
}

VaceConditioner::BlockInput VaceConditioner::read_block(int64_t index, int64_t latent_frames) {
  // The first block of a video starts with a frame of its own (the causal VAE's first frame).
  const int64_t count = input_block_frames(index, latent_frames, encoder_->temporal_scale());
  BlockInput in;
  in.frames = index == 0 ? source_->first_frames(count) : source_->next_frames(count);
  if (in.frames.dim() != 4 || in.frames.size(0) != count)
    throw Error(fmt::format("VACE: the control source gave [{}] for {} frames",
                            fmt::join(in.frames.sizes(), ", "), count));
  if (settings_.mode == VaceMode::inpaint) {  // else undefined: all ones (conditioning)
    in.mask =
        settings_.mask.dim() == 2
            ? settings_.mask.unsqueeze(0).expand({count, in.frames.size(2), in.frames.size(3)})
            : settings_.mask;
  }
  return in;
}

at::Tensor VaceConditioner::encode_input(const BlockInput& input) {
  return encoder_->encode(input.frames, input.mask, settings_.references);
}

at::Tensor VaceConditioner::encode_block(int64_t index, int64_t latent_frames) {
  return encode_input(read_block(index, latent_frames));
}

bool VaceConditioner::reads_as_filmed(int64_t latent_frames) const {
  return settings_.mode == VaceMode::conditioning &&
         longlive::reads_as_filmed(
             *source_, blocks_,
             input_block_frames(blocks_, latent_frames, encoder_->temporal_scale()));
}

at::Tensor VaceConditioner::encode_as_filmed(int64_t latent_frames) {
  const int64_t ts = encoder_->temporal_scale();
  const int64_t count = input_block_frames(blocks_, latent_frames, ts);
  encoder_->begin_parts(count);
  source_->next_frames_in_parts(count, ts,
                                [&](const at::Tensor& part) { encoder_->encode_part(part); });
  return encoder_->end_parts(settings_.references);
}

void VaceConditioner::before_block(StreamGenerator& generator) {
  const int64_t latent_frames = generator.options().frames_per_block;
  if (settings_.mode == VaceMode::reference) {
    if (!reference_context_.defined())
      reference_context_ = encoder_->encode_references(settings_.references);
    last_context_ = reference_context_;
    generator.set_vace(VaceInput{reference_context_, settings_.scale});
    ++blocks_;
    return;
  }
  // A first block (nothing launched a block ahead) is encoded on the worker too, waited for at
  // once: every encode of the input then runs on one stream, whose memory its caches are.
  const bool traced = blocks_ == 0 && input_trace();
  const auto feeding = std::chrono::steady_clock::now();
  // A paced camera's block not filmed yet: read in parts as it is filmed, each encoded as it
  // comes, so that only the last part's encode is left once the last frame is filmed. On the
  // worker, read there (this thread waits for the block anyway).
  const bool as_filmed = !ahead_->pending() && reads_as_filmed(latent_frames);
  // The first block's read and encode, timed stage by stage when traced (on the worker).
  const auto read_traced = [this, index = blocks_, latent_frames, traced] {
    const auto reading = std::chrono::steady_clock::now();
    BlockInput input = read_block(index, latent_frames);
    if (traced)
      log::info("input trace: first block's {} frames read in {:.1f} ms", input.frames.size(0),
                ms_since(reading));
    return input;
  };
  const auto encode_traced = [this, traced](const BlockInput& input) {
    if (!traced) return encode_input(input);
    // The GPU work queued before the launch (the worker's stream waits for it unless unordered):
    // apart from the encode's own time.
    const auto draining = std::chrono::steady_clock::now();
    wait_for_current_stream(encoder_->device());
    log::info("input trace: the GPU work queued before the encode done {:.1f} ms later",
              ms_since(draining));
    const auto launching = std::chrono::steady_clock::now();
    at::Tensor context = encode_input(input);
    const double launched = ms_since(launching);
    wait_for_current_stream(encoder_->device());
    log::info(
        "input trace: first block encoded: {:.1f} ms launching, done on the GPU {:.1f} ms "
        "after the launch began",
        launched, ms_since(launching));
    return context;
  };
  // A first block that reads nothing of the engine's stream (its frames read on the worker, no
  // reference or mask made on the device) may run beside what that stream holds
  // (first_encode_unordered).
  const auto on_device = [](const at::Tensor& t) { return t.defined() && !t.is_cpu(); };
  const bool unordered = blocks_ == 0 && first_encode_unordered() &&
                         !on_device(settings_.references) && !on_device(settings_.mask);
  if (as_filmed && ahead_->enabled())
    ahead_->launch([this, latent_frames] { return encode_as_filmed(latent_frames); });
  else if (!ahead_->pending() && ahead_->enabled() && unordered)
    ahead_->launch([=] { return encode_traced(read_traced()); }, /*after_callers_stream=*/false);
  else if (!ahead_->pending() && ahead_->enabled())
    ahead_->launch_prepared([&]() -> std::function<at::Tensor()> {
      return [encode_traced, input = read_traced()] { return encode_traced(input); };
    });
  last_context_ = ahead_->pending() ? ahead_->take()
                  : as_filmed       ? encode_as_filmed(latent_frames)
                                    : encode_block(blocks_, latent_frames);
  if (traced) log::info("input trace: first block fed in {:.1f} ms", ms_since(feeding));
  generator.set_vace(VaceInput{last_context_, settings_.scale});
  ++blocks_;
  if (!ahead_->enabled()) return;
  // The input's first block runs its DiT alone, the next block's frames read and encoded at
  // that block (faster to the first conditioned frame; LONGLIVE_FIRST_BLOCK_ALONE=0: encoded
  // beside it, encode_ahead.h).
  if (blocks_ == 1 && first_block_alone()) return;
  // A live input that has not filmed the next block's frames yet: they are read at that block
  // (on the worker, waited for), not now, where waiting for them would hold this block's DiT.
  if (!read_ahead_now(*source_,
                      input_block_frames(blocks_, latent_frames, encoder_->temporal_scale())))
    return;
  // The next block's frames, read now (on this thread: the source's order), encoded beside this
  // block's DiT. A source that fails here fails the next block, as it would have in place.
  ahead_->launch_prepared([&]() -> std::function<at::Tensor()> {
    return [this, input = read_block(blocks_, latent_frames)] { return encode_input(input); };
  });
}

bool VaceConditioner::waits_for_frames(int64_t latent_frames) const {
  return settings_.mode != VaceMode::reference &&
         read_waits(*source_, *ahead_, blocks_,
                    input_block_frames(blocks_, latent_frames, encoder_->temporal_scale()));
}

void VaceConditioner::feed_again(StreamGenerator& generator) {
  if (!last_context_.defined())
    throw Error("VACE: feed_again before any block was fed (before_block first)");
  generator.set_vace(VaceInput{last_context_, settings_.scale});
}

struct VideoToVideoState {
  WanVaeEncoder::Stream stream;
  std::shared_ptr<const TaehvEncoder> taehv;  // set: TAEHV's encoder instead of the Wan VAE's
  TaehvEncoder::Stream taehv_stream;
  int64_t groups_per_pass = 0;  // 1 for a camera's frames (VaceFrameSource::filmed)
};

VideoToVideo::VideoToVideo(std::unique_ptr<WanVaeEncoder> encoder, double strength,
                           std::shared_ptr<VaceFrameSource> source,
                           std::shared_ptr<EncodeWorker> worker)
    : encoder_(std::move(encoder)),
      state_(std::make_unique<VideoToVideoState>()),
      strength_(strength),
      source_(std::move(source)) {
  if (!encoder_) throw ConfigError("video-to-video: no Wan VAE encoder");
  start(std::move(worker), encoder_->device());
}

VideoToVideo::VideoToVideo(std::shared_ptr<const TaehvEncoder> encoder, double strength,
                           std::shared_ptr<VaceFrameSource> source,
                           std::shared_ptr<EncodeWorker> worker)
    : state_(std::make_unique<VideoToVideoState>()),
      strength_(strength),
      source_(std::move(source)) {
  if (!encoder) throw ConfigError("video-to-video: no TAEHV encoder");
  state_->taehv = std::move(encoder);
  start(std::move(worker), state_->taehv->device());
}

void VideoToVideo::start(std::shared_ptr<EncodeWorker> worker, at::Device device) {
  if (!source_) throw ConfigError("video-to-video needs input frames (a video or a camera)");
  if (!(strength_ > 0.0 && strength_ <= 1.0))
    throw ConfigError(fmt::format("video-to-video strength {} must be in (0, 1]", strength_));
  if (source_->filmed()) state_->groups_per_pass = 1;
  ahead_ = std::make_unique<EncodeAhead>(device, std::move(worker));
}

int64_t VideoToVideo::temporal_scale() const {
  return state_->taehv ? TaehvEncoder::kTimeDownscale : encoder_->config().temporal_scale();
}

VideoToVideo::~VideoToVideo() = default;

void VideoToVideo::reset() {
  ahead_->drop();
  state_->stream.reset();
  state_->taehv_stream.reset();
  last_latents_ = at::Tensor();
  blocks_ = 0;
}

at::Tensor VideoToVideo::read_block(int64_t index, int64_t latent_frames) {
  const int64_t count = input_block_frames(index, latent_frames, temporal_scale());
  // [T, 3, H, W]; an input's first frames as they are (VaceConditioner::read_block)
  return index == 0 ? source_->first_frames(count) : source_->next_frames(count);
}

at::Tensor VideoToVideo::encode_frames(const at::Tensor& frames) {
  if (const auto& taehv = state_->taehv)  // [F, z, h, w] -> [1, F, z, h, w] as the Wan VAE's
    return taehv
        ->encode_next((frames + 1) * 0.5, state_->taehv_stream,
                      state_->groups_per_pass * TaehvEncoder::kTimeDownscale)
        .unsqueeze(0);
  return encoder_->encode_next(frames.unsqueeze(0), state_->stream, state_->groups_per_pass);
}

at::Tensor VideoToVideo::encode_as_filmed(int64_t count) {
  // [1, F, z, h, w] per part; a camera's blocks take a group of frames per pass either way, so
  // the parts' latents are the whole block's.
  std::vector<at::Tensor> latents;
  source_->next_frames_in_parts(count, temporal_scale(), [&](const at::Tensor& part) {
    latents.push_back(encode_frames(part));
  });
  return latents.size() == 1 ? latents[0] : at::cat(latents, 1);
}

void VideoToVideo::before_block(StreamGenerator& generator) {
  const int64_t latent_frames = generator.options().frames_per_block;
  const int64_t count = input_block_frames(blocks_, latent_frames, temporal_scale());
  // A paced camera's block not filmed yet: encoded in parts as it is filmed (as
  // VaceConditioner::before_block).
  const bool as_filmed = !ahead_->pending() && reads_as_filmed(*source_, blocks_, count);
  if (as_filmed && ahead_->enabled())
    ahead_->launch([this, count] { return encode_as_filmed(count); });
  // A first block on the worker too, waited for at once (as VaceConditioner::before_block).
  else if (!ahead_->pending() && ahead_->enabled() && blocks_ == 0 && first_encode_unordered())
    ahead_->launch(  // as VaceConditioner's first block: read on the worker, beside the stream
        [this, latent_frames] { return encode_frames(read_block(0, latent_frames)); },
        /*after_callers_stream=*/false);
  else if (!ahead_->pending() && ahead_->enabled())
    ahead_->launch_prepared([&]() -> std::function<at::Tensor()> {
      return [this, frames = read_block(blocks_, latent_frames)] { return encode_frames(frames); };
    });
  last_latents_ = ahead_->pending() ? ahead_->take()
                  : as_filmed       ? encode_as_filmed(count)
                                    : encode_frames(read_block(blocks_, latent_frames));
  generator.set_v2v(V2vInput{last_latents_, strength_});
  ++blocks_;
  if (!ahead_->enabled()) return;
  if (blocks_ == 1 && first_block_alone()) return;  // as VaceConditioner's first block
  // Frames a live input has not filmed yet: read at their block (as VaceConditioner's).
  if (!read_ahead_now(*source_, input_block_frames(blocks_, latent_frames, temporal_scale())))
    return;
  ahead_->launch_prepared([&]() -> std::function<at::Tensor()> {
    return [this, frames = read_block(blocks_, latent_frames)] { return encode_frames(frames); };
  });
}

bool VideoToVideo::waits_for_frames(int64_t latent_frames) const {
  return read_waits(*source_, *ahead_, blocks_,
                    input_block_frames(blocks_, latent_frames, temporal_scale()));
}

void VideoToVideo::feed_again(StreamGenerator& generator) {
  if (!last_latents_.defined())
    throw Error("video-to-video: feed_again before any block was fed (before_block first)");
  generator.set_v2v(V2vInput{last_latents_, strength_});
}

}  // namespace longlive
