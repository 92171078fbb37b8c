#include "longlive/async_decoder.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/profiler.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "runtime/dedicated_stream.h"
#endif

namespace longlive {

struct AsyncDecoder::Pending {
  // The block's RGBA8 frames [N, H, W, 4]: pinned on the host (unless host copies are off) and,
  // on CUDA, on the device (written part by part, handed out as views of these).
  at::Tensor host;
  at::Tensor device_rgba;
  double host_ms = 0;
  struct Part {
    int64_t end_frame = 0;  // the part's frames end here (they begin where the last one ended)
#ifdef LONGLIVE_WITH_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> done;  // shared with the device frames' consumers
#endif
  };
  std::vector<Part> parts;
  size_t taken = 0;  // parts handed out
#ifdef LONGLIVE_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAEvent> started;
#endif
  int64_t taken_frames() const { return taken == 0 ? 0 : parts[taken - 1].end_frame; }
  bool next_done() const {
#ifdef LONGLIVE_WITH_CUDA
    if (const auto& done = parts[taken].done) return done->query();
#endif
    return true;
  }
};

#ifdef LONGLIVE_WITH_CUDA
struct AsyncDecoder::Streams {
  DedicatedStream decode;  // its own: a pool stream may be another thread's too
};
#else
struct AsyncDecoder::Streams {};
#endif

AsyncDecoder::AsyncDecoder(std::unique_ptr<StreamingDecoder> decoder, at::Device device,
                           int64_t latent_frames_per_part)
    : decoder_(std::move(decoder)),
      device_(device),
      latent_frames_per_part_(std::max<int64_t>(0, latent_frames_per_part)) {
  if (!decoder_) throw ConfigError("AsyncDecoder needs a decoder");
#ifdef LONGLIVE_WITH_CUDA
  if (device_.is_cuda()) {
    streams_.reset(new Streams{DedicatedStream(device_.index(), /*high_priority=*/true)});
  }
#endif
}

AsyncDecoder::~AsyncDecoder() {
  // Queued work still references our tensors: let it finish before they are freed.
  while (!queue_.empty()) take();
}

void AsyncDecoder::reset() {
  while (!queue_.empty()) take();
  decoder_->reset();
  first_block_ = true;
}

void AsyncDecoder::submit(const at::Tensor& latents, const c10::Event* ready) {
  auto job = std::make_unique<Pending>();
  const int64_t latent_frames = latents.size(1);
  const int64_t per_part = latent_frames_per_part_ > 0
                               ? std::min(latent_frames_per_part_, latent_frames)
                               : latent_frames;
  const int64_t frames = decoder_->frames_for(latent_frames, first_block_);
  auto wrong_count = [&](int64_t made) {
    return Error(
        fmt::format("AsyncDecoder: the decoder made {} frames of a block of {} latent "
                    "frames, expected {} (StreamingDecoder::frames_for)",
                    made, latent_frames, frames));
  };
  first_block_ = false;
  const auto start = std::chrono::steady_clock::now();
#ifdef LONGLIVE_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> guard;
  std::optional<c10::cuda::CUDAStream> decode;
  std::optional<c10::cuda::CUDAStreamGuard> on_decode;
  if (streams_) {
    guard.emplace(device_);
    decode = streams_->decode.get();
    if (ready != nullptr) {
      ready->block(*decode);
    } else {
      at::cuda::CUDAEvent produced;
      produced.record(c10::cuda::getCurrentCUDAStream(device_.index()));
      produced.block(*decode);
    }
    on_decode.emplace(*decode);
    job->started = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);  // timing on
    job->started->record(*decode);
    // The caller's allocator must not recycle the latents while this stream still reads them.
    c10::cuda::CUDACachingAllocator::recordStream(latents.storage().data_ptr(), *decode);
  }
#endif
  int64_t frame = 0;
  for (int64_t begin = 0; begin < latent_frames; begin += per_part) {
    const int64_t n = std::min(per_part, latent_frames - begin);
    const bool whole = n == latent_frames;
    at::Tensor rgba;
    {
      const ProfileScope scope("decode");
      rgba = to_rgba8(decoder_->decode(whole ? latents : latents.narrow(1, begin, n)));
    }
    const int64_t count = rgba.size(0);
    if (frame + count > frames) throw wrong_count(frame + count);
    const bool on_device = rgba.is_cuda() && streams_;
    if (frame == 0) {
      // The whole block's frames in one tensor (take_block() hands out one), its parts written in.
      std::vector<int64_t> shape = rgba.sizes().vec();
      shape[0] = frames;
      if (on_device) {
        job->device_rgba = whole ? rgba : at::empty(shape, rgba.options());
        if (host_copies_)
          job->host = at::empty(shape, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      } else {
        job->host = at::empty(shape, at::TensorOptions().dtype(at::kByte));
      }
    }
    if (on_device) {
      if (!whole) job->device_rgba.narrow(0, frame, count).copy_(rgba);
      if (job->host.defined())
        job->host.narrow(0, frame, count)
            .copy_(job->device_rgba.narrow(0, frame, count), /*non_blocking=*/true);
    } else {
      job->host.narrow(0, frame, count).copy_(rgba);
    }
    frame += count;
    Pending::Part part;
    part.end_frame = frame;
#ifdef LONGLIVE_WITH_CUDA
    if (decode) {
      part.done = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
      part.done->record(*decode);
    }
#endif
    job->parts.push_back(std::move(part));
  }
  if (frame != frames) throw wrong_count(frame);
  job->host_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  queue_.push_back(std::move(job));
}

std::optional<DecodedPart> AsyncDecoder::take_part(bool wait) {
  if (queue_.empty()) {
    if (wait) throw Error("AsyncDecoder::take_part() with no block submitted");
    return std::nullopt;
  }
  Pending& job = *queue_.front();
  if (!wait && !job.next_done()) return std::nullopt;
  const int64_t begin = job.taken_frames();
  const Pending::Part& part = job.parts[job.taken++];
  const int64_t count = part.end_frame - begin;
  // A part that is the whole block hands out the block's tensors, not views of them (a view
  // keeps its base tensor too).
  auto frames_of = [&](const at::Tensor& block) {
    return begin == 0 && count == block.size(0) ? block : block.narrow(0, begin, count);
  };
  DecodedPart out;
  out.first_frame = begin;
  out.last = job.taken == job.parts.size();
  if (job.host.defined()) out.frames.host = frames_of(job.host);
#ifdef LONGLIVE_WITH_CUDA
  if (part.done) {
    part.done->synchronize();
    out.frames.device = frames_of(job.device_rgba);
    // The aliasing constructor: the event handle lives as long as its CUDAEvent owner.
    out.frames.ready = std::shared_ptr<CUevent_st>(part.done, part.done->event());
  }
#endif
  if (out.last) {
    last_decode_ms_ = job.host_ms;
    last_d2h_bytes_ = 0;
#ifdef LONGLIVE_WITH_CUDA
    if (job.started) {
      last_decode_ms_ = job.started->elapsed_time(*part.done);
      if (job.host.defined()) last_d2h_bytes_ = static_cast<int64_t>(job.host.nbytes());
    }
#endif
    queue_.pop_front();  // the views above keep what they show
  }
  return out;
}

DecodedBlock AsyncDecoder::take_block() {
  if (queue_.empty()) throw Error("AsyncDecoder::take() with no block submitted");
  const int64_t begin = queue_.front()->taken_frames();
  if (begin == 0 && queue_.front()->parts.size() == 1) return take_part(true)->frames;
  // The rest of the block as one view: the frames of its last part are the last written (on the
  // decode stream, in order), so its event stands for them all.
  at::Tensor host = queue_.front()->host;
  at::Tensor device = queue_.front()->device_rgba;
  std::optional<DecodedPart> part;
  do part = take_part(true);
  while (!part->last);
  DecodedBlock block = std::move(part->frames);
  auto rest_of = [&](const at::Tensor& all) {
    return begin == 0 ? all : all.narrow(0, begin, all.size(0) - begin);
  };
  if (host.defined()) block.host = rest_of(host);
  if (block.device.defined()) block.device = rest_of(device);
  return block;
}

}  // namespace longlive
