#pragma once
// Decodes blocks on a CUDA stream of its own, so block k turns into pixels while the DiT already
// generates block k+1 on the compute stream (DESIGN §3). submit() returns at once: the decode
// stream waits on an event recorded on the caller's stream, runs the decoder and the RGBA8
// conversion, and copies the frames into pinned host memory (unless host copies are off); take()
// waits for the oldest block.
// A block may be decoded in parts of a few latent frames, each with its own event (the decoders'
// temporal state makes any split exact): take_part() hands out a block's first frames while its
// last latent frames are still being decoded.
// take_block() also hands out the device frames (for a consumer that copies them on the GPU);
// the decoder keeps nothing of a block once it is taken.
// On CPU everything happens inside submit() (there is nothing to overlap with).
#include <ATen/ATen.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include "longlive/decoder.h"

namespace c10 {
struct Event;
}

namespace longlive {

// One decoded block.
struct DecodedBlock {
  // [N, H, W, 4] uint8 on the CPU (pinned when decoded on CUDA); undefined when host copies are
  // off (set_host_copies) and the frames stay on the device.
  at::Tensor host;
  // The same frames on the device and the event recorded on the decode stream after they were
  // written; both empty on the CPU. Holding `device` keeps the block's device memory.
  at::Tensor device;
  std::shared_ptr<CUevent_st> ready;
};

// Some frames of a block, in order (take_part).
struct DecodedPart {
  DecodedBlock frames;      // this part's frames only; `ready` is the part's own event
  int64_t first_frame = 0;  // of its block
  bool last = false;        // it completes its block (the block has left the queue)
};

class AsyncDecoder {
 public:
  // latent_frames_per_part: each block is decoded in parts of that many latent frames, on CUDA
  // each part's frames ready (and taken) as soon as it is decoded (on the CPU all within
  // submit()); 0: the whole block at once.
  AsyncDecoder(std::unique_ptr<StreamingDecoder> decoder, at::Device device,
               int64_t latent_frames_per_part = 0);
  ~AsyncDecoder();
  AsyncDecoder(const AsyncDecoder&) = delete;
  AsyncDecoder& operator=(const AsyncDecoder&) = delete;

  // Drops the queued blocks and the decoder's temporal state: the next block starts a video.
  void reset();
  // Queues a block of latents [1, T, C, h, w] produced on the current stream: the decode waits
  // for `ready` where given (recorded once they were written), else for all queued there.
  void submit(const at::Tensor& latents, const c10::Event* ready = nullptr);
  // Blocks submitted and not yet taken.
  size_t pending() const { return queue_.size(); }
  // Waits for the oldest queued block: RGBA8 frames [N, H, W, 4] uint8 on the host (those not
  // taken yet by take_part).
  at::Tensor take() { return take_block().host; }
  // The same, with the block's device frames (CUDA only).
  DecodedBlock take_block();
  // The oldest block's next part; waits for its decode when `wait`, else nullopt until it is
  // done (and with nothing queued).
  std::optional<DecodedPart> take_part(bool wait);
  // Device time of the last completed block's decode + conversion + copy, all its parts (CUDA
  // events; host time on the CPU).
  double last_decode_ms() const { return last_decode_ms_; }
  // On CUDA, whether submitted blocks are also copied to pinned host memory (default on). A
  // display that draws the device frames needs none; a recorder does. Applies from the next
  // submit(); on the CPU the frames are always on the host.
  void set_host_copies(bool on) { host_copies_ = on; }
  bool host_copies() const { return host_copies_ || !device_.is_cuda(); }
  // Device -> host bytes copied for the last taken block (0 with host copies off).
  int64_t last_d2h_bytes() const { return last_d2h_bytes_; }

 private:
  struct Pending;
  std::unique_ptr<StreamingDecoder> decoder_;
  at::Device device_;
  std::deque<std::unique_ptr<Pending>> queue_;
  struct Streams;
  std::unique_ptr<Streams> streams_;  // CUDA only
  int64_t latent_frames_per_part_ = 0;
  bool first_block_ = true;  // the next submit() starts a video (frames_for)
  double last_decode_ms_ = 0;
  bool host_copies_ = true;
  int64_t last_d2h_bytes_ = 0;
};

}  // namespace longlive
