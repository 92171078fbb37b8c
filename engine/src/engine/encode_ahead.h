#pragma once
// One block's input encode (VACE context, video-to-video latents) started a block ahead, on a
// host thread and a CUDA stream of its own (both kept for the object's lifetime), so that it runs
// beside the DiT of the block before instead of in front of it on the generator's stream
// (docs/vace.md). The encoders sync the host now and then (fixed-point probes, mask checks): on
// their own thread those waits hold neither the engine thread nor the DiT's launches.
//
// launch() starts the work for the next block; take() hands its result to the caller's current
// stream (which waits for it on the GPU, not the host) and rethrows what the work threw. Only
// on a CUDA device, unless LONGLIVE_ENCODE_AHEAD=0 (the encode then runs in place, on the
// generator's stream; a camera's frames reach the video a block sooner that way).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <exception>
#include <functional>
#include <future>
#include <memory>

namespace longlive {

// Whether the environment lets inputs be encoded ahead (LONGLIVE_ENCODE_AHEAD unset or not "0").
bool encode_ahead_turned_on();
// Whether an input's first block runs its DiT alone, the second block's encode launched only at
// that block (on unless LONGLIVE_FIRST_BLOCK_ALONE=0). Measured faster on an H100 at aa35d33 (a
// camera pick to its first conditioned frame 307.0 ms against 401.9 ms with the next block's
// encode beside the first block's DiT, turbo_fp8): that encode slowed the DiT the user waits for.
// (Slower at 5969ee2, 488 against 414 ms on an H200, when the first block's frames were handed out
// only after the next block's inputs; the engine hands them out before those since.)
bool first_block_alone();
// Whether an input's first block is read and encoded on the worker without waiting for the
// engine's stream (on unless LONGLIVE_FIRST_ENCODE_UNORDERED=0): a pick gives the block in
// progress up between two steps, and the step in flight (31.5 ms on an H100 at 5fb8a64) held the
// first encode, which reads nothing of that stream, behind it. Measured on an H100 at 1de1fed
// (turbo_fp8, frames at once): picked -> first conditioned frame 255.7 ms against 262.1 ordered
// (docs/vace.md).
bool first_encode_unordered();
// Whether an input's opening and first block are timed stage by stage in the log
// (LONGLIVE_INPUT_TRACE=1; the camera-to-screen budget in docs/vace.md). The first block's encode
// is then waited for on its stream, so the GPU's share shows apart from the host's.
bool input_trace();
// Whether a live input's next block is read ahead even when it has not been filmed yet
// (LONGLIVE_LIVE_READ_AHEAD=1, the way before 8b8d495, for the A/B; VaceFrameSource::has_frames).
bool read_live_ahead();

// Control frames of an input's block `index`: 1 + ts (F - 1) for its first (the causal VAE's
// first frame alone), ts F after (9 then 12 for 3 latent frames per block).
int64_t input_block_frames(int64_t index, int64_t latent_frames, int64_t temporal_scale);

class EncodeAhead;
class VaceFrameSource;
// Whether the next block's `count` frames are read now, a block ahead: a live input only once
// it has filmed them (VaceFrameSource::has_frames), unless read_live_ahead().
bool read_ahead_now(const VaceFrameSource& source, int64_t count);
// Whether reading block `index` (`count` frames) waits for the source to film them: nothing was
// read ahead for it, and the source has not filmed them (an input's first block: its first).
bool read_waits(const VaceFrameSource& source, const EncodeAhead& ahead, int64_t index,
                int64_t count);

// Whether block `index` (`count` frames) is read and encoded in parts as the input films them
// (VaceFrameSource::next_frames_in_parts): past an input's first block, from an input that has
// not filmed them yet (a paced camera), unless LONGLIVE_ENCODE_AS_FILMED=0 (for the A/B: the
// block read whole once filmed, then encoded whole).
bool reads_as_filmed(const VaceFrameSource& source, int64_t index, int64_t count);

class EncodeWorker;  // the worker thread and its stream (longlive/vace.h: make_encode_worker)
at::Device device_of(const EncodeWorker& worker);

class EncodeAhead {
 public:
  // `worker`: a worker kept by the caller beyond this object (LiveInputs keeps one per input
  // kind for the session), so that cuDNN's plans found on its thread are found once; null: a
  // worker of its own.
  explicit EncodeAhead(at::Device device, std::shared_ptr<EncodeWorker> worker = nullptr);
  ~EncodeAhead();  // waits for the work in flight
  EncodeAhead(const EncodeAhead&) = delete;
  EncodeAhead& operator=(const EncodeAhead&) = delete;

  // Whether work can run ahead here (a CUDA device, turned on by the environment).
  bool enabled() const { return enabled_; }
  // Starts `work` on the side thread and stream (one at a time: the previous must be taken).
  // The side stream first waits for what the caller's stream has queued (the work may read
  // tensors made there), unless `after_callers_stream` is false: for work that reads its input
  // itself, on the worker, and nothing else made on the caller's stream, so that it runs beside
  // what is queued there (the step in flight of a block given up).
  void launch(std::function<at::Tensor()> work, bool after_callers_stream = true);
  // The next block's work: `prepare` runs here, now (it reads the input, in the source's order,
  // on the caller's thread) and returns the work to launch; if it throws, take() rethrows that
  // at the next block, where the failure belongs.
  void launch_prepared(const std::function<std::function<at::Tensor()>()>& prepare);
  // A failure found while preparing the next block's work (its input): rethrown by take().
  void fail(std::exception_ptr failure);
  bool pending() const { return pending_; }
  // The launched work's result, ready on the current stream; rethrows its failure.
  at::Tensor take();
  // Waits for the work in flight and forgets it (a new video, the input removed).
  void drop();

 private:
  friend class EncodeWorker;
  struct Result;
  at::Device device_;
  std::shared_ptr<EncodeWorker> side_;
  bool enabled_ = false;
  bool pending_ = false;
  std::future<std::shared_ptr<Result>> future_;
  std::exception_ptr failure_;
};

}  // namespace longlive
