#pragma once
// Helpers of the tests that drive sessions, performances and engines on the tiny random model.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "longlive/generator.h"
#include "longlive/session.h"

namespace longlive::test {

// The tiny random model (CPU-sized, no files) on `device`; without one, where the factory puts
// it by default (the first CUDA device when there is one, else the CPU).
inline ModelSpec tiny_model(std::optional<at::Device> device = std::nullopt) {
  ModelSpec m;
  m.tiny_random = true;
  m.device = device;
  return m;
}

// A preset whose KV window (6 latent frames) the tiny model fills within a few blocks, so a test
// can switch before it is full and run blocks past it (the sequence-parallel tests).
inline Preset windowed_preset(const std::string& name = "windowed") {
  Preset p;
  p.name = name;
  p.local_attn_frames = 6;
  return p;
}

// Blocks enough to pass the generator's window (two beyond the blocks that fill it).
inline int64_t blocks_past_window(const GeneratorOptions& o) {
  return o.local_attn_frames / o.frames_per_block + 2;
}

// Polls `done` every 10 ms until it holds or `ms` have passed; returns whether it holds. The
// default is generous for the 2-core CI machine: a wait that succeeds returns as soon as it does.
inline bool wait_for(const std::function<bool()>& done, int ms = 180000) {
  for (int i = 0; i < ms / 10 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

}  // namespace longlive::test
