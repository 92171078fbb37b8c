#pragma once
// Work queued on a second CUDA stream beside the current one, for a chain that does not depend
// on what the current stream does next (the VACE blocks need only the DiT's embedded input, not
// its layers, so they run beside them and fill what the layers leave of the GPU):
//   SideStream side(device);         // the side stream starts after the current stream's work
//   side.run([&] { ...; side.mark(); ... });  // work on the side stream, marks of its progress
//   side.wait(0);                    // the current stream waits for mark 0
//   // ~SideStream: the current stream (of the constructor) waits for all of the side's work.
// In a CUDA graph capture the fork, marks and join become edges of the graph. Tensors the side
// stream reads that were made on the current stream must live until the join (declare them
// before the SideStream), as must anything both streams touch.
#include <c10/core/Device.h>

#include <cstddef>
#include <functional>
#include <memory>

namespace longlive {

class SideStream {
 public:
  // Whether this build and `device` can have one (CUDA).
  static bool usable(c10::Device device);
  // Throws on a device without CUDA (check usable() first). `high_priority`: the side stream's
  // blocks go first where both streams have blocks waiting for the GPU.
  explicit SideStream(c10::Device device, bool high_priority = false);
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

  // Runs `work` on this thread with the side stream current (LibTorch's ops queue onto it).
  void run(const std::function<void()>& work);
  // Records how far the side stream has got; returns the mark's index (0, 1, ...).
  size_t mark();
  // The current stream waits for mark `index`.
  void wait(size_t index) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longlive
