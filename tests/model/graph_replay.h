#pragma once
// Inside a CUDA graph, as the DiT runs its forwards: `run` captured on a side stream and replayed
// must give the eager call's output bit for bit (two eager calls are checked to agree first).
// A no-op in a build without CUDA (callers skip without a device).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace longlive::test {

inline void expect_replay_equals_eager(const std::function<at::Tensor()>& run,
                                       const std::string& what) {
#ifdef LONGLIVE_WITH_CUDA
  const at::Tensor eager = run();
  EXPECT_TRUE(run().equal(eager)) << what;
  at::cuda::CUDAGraph graph;
  at::Tensor captured;
  {
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
    c10::cuda::device_synchronize();
    const c10::cuda::CUDAStreamGuard guard(side);
    graph.capture_begin();
    captured = run();
    graph.capture_end();
  }
  graph.replay();
  c10::cuda::device_synchronize();
  EXPECT_TRUE(captured.equal(eager)) << what;
#else
  (void)run, (void)what;
#endif
}

}  // namespace longlive::test
