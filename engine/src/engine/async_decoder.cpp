#include "longlive/async_decoder.h"

#include "longlive/error.h"
#include "longlive/profiler.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "runtime/dedicated_stream.h"
#endif

namespace longlive {

struct AsyncDecoder::Pending {
  at::Tensor host;  // RGBA8 frames, pinned on CUDA
  double host_ms = 0;
#ifdef LONGLIVE_WITH_CUDA
  at::Tensor device_rgba;  // kept alive until the copy is done, then handed to take_block()
  std::unique_ptr<at::cuda::CUDAEvent> started;
  std::shared_ptr<at::cuda::CUDAEvent> done;  // shared with the device frames' consumers
#endif
};

#ifdef LONGLIVE_WITH_CUDA
struct AsyncDecoder::Streams {
  DedicatedStream decode;  // its own: a pool stream may be another thread's too
};
#else
struct AsyncDecoder::Streams {};
#endif

AsyncDecoder::AsyncDecoder(std::unique_ptr<StreamingDecoder> decoder, at::Device device)
    : decoder_(std::move(decoder)), device_(device) {
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
}

void AsyncDecoder::submit(const at::Tensor& latents) {
  auto job = std::make_unique<Pending>();
#ifdef LONGLIVE_WITH_CUDA
  if (streams_) {
    const c10::cuda::CUDAGuard guard(device_);
    const c10::cuda::CUDAStream decode = streams_->decode.get();
    at::cuda::CUDAEvent produced;
    produced.record(c10::cuda::getCurrentCUDAStream(device_.index()));
    const c10::cuda::CUDAStreamGuard on_decode(decode);
    produced.block(decode);
    job->started = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);  // timing on
    job->started->record(decode);
    // The caller's allocator must not recycle the latents while this stream still reads them.
    c10::cuda::CUDACachingAllocator::recordStream(latents.storage().data_ptr(), decode);
    {
      const ProfileScope scope("decode");
      job->device_rgba = to_rgba8(decoder_->decode(latents));
    }
    if (host_copies_) {
      job->host = at::empty(job->device_rgba.sizes(),
                            at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      job->host.copy_(job->device_rgba, /*non_blocking=*/true);
    }
    job->done = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
    job->done->record(decode);
    queue_.push_back(std::move(job));
    return;
  }
#endif
  const ProfileScope scope("decode");
  const auto start = std::chrono::steady_clock::now();
  job->host = to_rgba8(decoder_->decode(latents)).to(at::kCPU);
  job->host_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  queue_.push_back(std::move(job));
}

DecodedBlock AsyncDecoder::take_block() {
  if (queue_.empty()) throw Error("AsyncDecoder::take() with no block submitted");
  std::unique_ptr<Pending> job = std::move(queue_.front());
  queue_.pop_front();
  last_decode_ms_ = job->host_ms;
  last_d2h_bytes_ = 0;
  DecodedBlock block{job->host, {}, {}};
#ifdef LONGLIVE_WITH_CUDA
  if (job->done) {
    job->done->synchronize();
    last_decode_ms_ = job->started->elapsed_time(*job->done);
    if (job->host.defined()) last_d2h_bytes_ = static_cast<int64_t>(job->host.nbytes());
    block.device = std::move(job->device_rgba);
    // The aliasing constructor: the event handle lives as long as its CUDAEvent owner.
    block.ready = std::shared_ptr<CUevent_st>(job->done, job->done->event());
  }
#endif
  return block;
}

}  // namespace longlive
