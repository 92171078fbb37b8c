#pragma once
// Helpers of the tests that drive sessions, performances and engines on the tiny random model.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

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

// Polls `done` every 10 ms until it holds or `ms` have passed; returns whether it holds. The
// default is generous for the 2-core CI machine: a wait that succeeds returns as soon as it does.
inline bool wait_for(const std::function<bool()>& done, int ms = 180000) {
  for (int i = 0; i < ms / 10 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

}  // namespace longlive::test
