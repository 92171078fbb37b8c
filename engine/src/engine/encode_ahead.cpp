#include "encode_ahead.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/env.h"
#include "longlive/error.h"
#include "longlive/vace.h"

#include "runtime/capture_gate.h"
#ifdef LONGLIVE_WITH_CUDA
#include "runtime/dedicated_stream.h"
#endif

namespace longlive {

struct EncodeAhead::Result {
  at::Tensor value;
  std::optional<c10::Event> done;  // recorded on the side stream after the work
};

// One worker thread and one stream for the object's lifetime. The thread: LibTorch keeps cuDNN's
// found plans per thread, so a new thread searches every convolution again, and the search
// synchronises the device (which broke a DiT capture on the engine thread); hence one per block
// was replaced by one per EncodeAhead, and that by one per session and input kind (LiveInputs),
// so a camera picked again does not search again. The stream: its own, not one of the pool's,
// which are shared sooner or later (runtime/dedicated_stream.h).
class EncodeWorker {
 public:
  explicit EncodeWorker(at::Device device)
      : device_(device)
#ifdef LONGLIVE_WITH_CUDA
        ,
        stream_(device.index(), /*high_priority=*/false)
#endif
  {
    thread_ = std::thread([this] { serve(); });
  }
  ~EncodeWorker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  EncodeWorker(const EncodeWorker&) = delete;
  EncodeWorker& operator=(const EncodeWorker&) = delete;

  at::Device device() const { return device_; }

  c10::Stream stream() const {
#ifdef LONGLIVE_WITH_CUDA
    return stream_.get().unwrap();
#else
    return c10::Stream(c10::Stream::DEFAULT, c10::Device(c10::kCPU));
#endif
  }

  using Task = std::packaged_task<std::shared_ptr<EncodeAhead::Result>()>;

  std::future<std::shared_ptr<EncodeAhead::Result>> submit(Task task) {
    auto future = task.get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(task));
    }
    wake_.notify_all();
    return future;
  }

 private:
  void serve() {
    const c10::StreamGuard on_side(stream());  // this thread's current stream, for good
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, nothing left
        task = std::move(jobs_.front());
        jobs_.pop_front();
      }
      task();  // a throw lands in the future
    }
  }

  at::Device device_;
#ifdef LONGLIVE_WITH_CUDA
  DedicatedStream stream_;
#endif
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// On unless LONGLIVE_ENCODE_AHEAD=0: measured faster on an H100 (a live VACE block 415.5 vs
// 438.3 ms in place for balanced, p99 421 vs 543 ms; docs/benchmarks.md).
bool encode_ahead_turned_on() { return !env_is("LONGLIVE_ENCODE_AHEAD", "0"); }

bool first_block_alone() { return !env_is("LONGLIVE_FIRST_BLOCK_ALONE", "0"); }

bool first_encode_unordered() { return !env_is("LONGLIVE_FIRST_ENCODE_UNORDERED", "0"); }

bool input_trace() { return env_is("LONGLIVE_INPUT_TRACE", "1"); }

bool read_live_ahead() { return env_is("LONGLIVE_LIVE_READ_AHEAD", "1"); }

int64_t input_block_frames(int64_t index, int64_t latent_frames, int64_t temporal_scale) {
  return index == 0 ? 1 + temporal_scale * (latent_frames - 1) : temporal_scale * latent_frames;
}

bool reads_as_filmed(const VaceFrameSource& source, int64_t index, int64_t count) {
  return index > 0 && !env_is("LONGLIVE_ENCODE_AS_FILMED", "0") && !source.has_frames(count);
}

bool read_ahead_now(const VaceFrameSource& source, int64_t count) {
  return read_live_ahead() || source.has_frames(count);
}

bool read_waits(const VaceFrameSource& source, const EncodeAhead& ahead, int64_t index,
                int64_t count) {
  return !ahead.pending() && !source.has_frames(index == 0 ? 1 : count);
}

at::Device device_of(const EncodeWorker& worker) { return worker.device(); }

std::shared_ptr<EncodeWorker> make_encode_worker(at::Device device) {
  if (!device.is_cuda() || !encode_ahead_turned_on()) return nullptr;
  return std::make_shared<EncodeWorker>(device);
}

EncodeAhead::EncodeAhead(at::Device device, std::shared_ptr<EncodeWorker> worker)
    : device_(device), enabled_(device.is_cuda() && encode_ahead_turned_on()) {
  if (!enabled_) return;
  if (worker && worker->device() != device)
    throw Error(fmt::format("EncodeAhead: a worker of {} for an encoder on {}",
                            worker->device().str(), device.str()));
  side_ = worker ? std::move(worker) : std::make_shared<EncodeWorker>(device);
}

EncodeAhead::~EncodeAhead() { drop(); }

void EncodeAhead::launch(std::function<at::Tensor()> work, bool after_callers_stream) {
  if (!enabled_) throw Error("EncodeAhead::launch: not enabled on this device");
  if (pending_) throw Error("EncodeAhead::launch: the previous block's work was not taken");
  const at::Device device = device_;
  // The side stream starts after what the caller's stream has queued so far (the work may read
  // tensors made there).
  std::optional<c10::Event> queued;
  if (after_callers_stream) {
    queued.emplace(device.type());
    queued->record(c10::impl::getDeviceGuardImpl(device.type())->getStream(device));
  }
  future_ =
      side_->submit(EncodeWorker::Task([device, side = side_->stream(), work = std::move(work),
                                        queued = std::move(queued)]() mutable {
        if (queued) queued->block(side);
        auto result = std::make_shared<Result>();
        {
          // A DiT capture on the engine thread waits for this encode, and this encode for it: the
          // encoders may synchronise the device (capture_gate.h).
          const auto gate = hold_outside_captures(device.index());
          result->value = work();
        }
        result->done.emplace(device.type());
        result->done->record(side);
        return result;
      }));
  pending_ = true;
}

void EncodeAhead::launch_prepared(const std::function<std::function<at::Tensor()>()>& prepare) {
  std::function<at::Tensor()> work;
  try {
    work = prepare();
  } catch (...) {
    fail(std::current_exception());
    return;
  }
  launch(std::move(work));
}

void EncodeAhead::fail(std::exception_ptr failure) {
  failure_ = std::move(failure);
  pending_ = true;
}

at::Tensor EncodeAhead::take() {
  if (!pending_) throw Error("EncodeAhead::take: nothing was launched");
  pending_ = false;
  // A failure stands instead of a launch (launch_prepared): no work is in flight then.
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  const std::shared_ptr<Result> result = future_.get();  // rethrows the work's failure
  const c10::Stream current = c10::impl::getDeviceGuardImpl(device_.type())->getStream(device_);
  result->done->block(current);
  // Made on the side stream, read on this one: its memory is not reused before this stream is
  // done with it.
  if (result->value.defined() && result->value.device().type() == device_.type())
    result->value.record_stream(current);
  return result->value;
}

void EncodeAhead::drop() {
  if (future_.valid()) {
    try {
      // Done on the GPU too: the encoder's state may be reset on another stream next.
      if (const auto result = future_.get(); result->done) result->done->synchronize();
    } catch (...) {  // forgotten with the work
    }
  }
  future_ = {};
  failure_ = nullptr;
  pending_ = false;
}

}  // namespace longlive
