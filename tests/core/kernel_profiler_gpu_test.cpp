// The kernel profiler on a GPU (skips without one): known ATen kernels in two regions and one
// CUDA graph replay come out with their names, counts and regions, a kernel launched after stop()
// stays out, and the sampled kernel time fits in the CUDA-event span of the same work; released,
// CUPTI stops keeping memory for the kernels run, and a sample attaches it again.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>

#include "longlive/kernel_profiler.h"
#include "longlive/profiler.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace longlive::test {
namespace {

struct RegionSum {
  int64_t count = 0, graph_count = 0;
  double ms = 0;
  std::set<std::string> names;  // full names
};

RegionSum sum_region(const KernelTable& t, const std::string& region) {
  RegionSum s;
  for (const KernelRow& r : t.rows) {
    if (r.region != region) continue;
    s.count += r.count;
    s.graph_count += r.graph_count;
    s.ms += r.total_ms;
    s.names.insert(r.full_name);
  }
  return s;
}

std::string dump(const KernelTable& t) { return "\n" + format_kernel_table(t); }

// Both ways of correlating launches with regions: the launch calls only (default) and every API.
class KernelProfilerGpu : public ::testing::TestWithParam<bool> {};

TEST_P(KernelProfilerGpu, KnownKernelsByRegionWithAGraphReplay) {
#ifndef LONGLIVE_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!KernelProfiler::built_with_cupti()) GTEST_SKIP() << KernelProfiler::unavailable_reason();
  // Built with CUPTI and on a GPU: it must work.
  ASSERT_EQ(KernelProfiler::prepare(), "");
  const at::Device device(at::kCUDA, 0);
  const auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  const at::Tensor a = at::randn({512, 512}, opts);
  const at::Tensor b = at::randn({512, 512}, opts);
  at::matmul(a, b);  // cuBLAS handle and workspace before the sample
  at::add(a, b);

  // A graph of one multiply, captured before the sample (as the DiT's graphs are).
  const at::Tensor gx = at::randn({1 << 16}, opts);
  at::Tensor gy;
  at::cuda::CUDAGraph graph;
  {
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
    side.synchronize();
    c10::cuda::device_synchronize();
    const c10::cuda::CUDAStreamGuard guard(side);
    graph.capture_begin();
    gy = gx.mul(3.0);
    graph.capture_end();
  }
  c10::cuda::device_synchronize();

  RegionProfiler regions(device);
  KernelProfiler kernels(KernelProfiler::Options{.all_apis = GetParam()});
  KernelProfiler other;
  regions.activate();
  ASSERT_TRUE(kernels.start()) << kernels.last_error();
  EXPECT_TRUE(kernels.sampling());
  EXPECT_FALSE(other.start());
  EXPECT_EQ(other.last_error(), "another KernelProfiler is sampling");
  {
    const ProfileScope scope("matmuls");
    for (int i = 0; i < 3; ++i) at::matmul(a, b);
  }
  {
    const ProfileScope scope("adds");
    for (int i = 0; i < 2; ++i) at::add(a, b);
  }
  {
    const ProfileScope scope("graph");
    graph.replay();
  }
  kernels.stop();
  EXPECT_FALSE(kernels.sampling());
  at::add(a, b);  // after stop(): not part of the sample
  const RegionTimes times = regions.collect();
  regions.deactivate();
  c10::cuda::device_synchronize();
  const KernelTable t = kernels.collect();
  ASSERT_TRUE(t.unavailable.empty()) << t.unavailable;
  EXPECT_EQ(t.dropped, 0);
  EXPECT_EQ(t.incomplete, 0);

  // Every kernel in the sample came from one of the three regions.
  for (const KernelRow& r : t.rows) {
    EXPECT_TRUE(r.region == "matmuls" || r.region == "adds" || r.region == "graph")
        << r.region << ": " << r.full_name << dump(t);
    EXPECT_NEAR(r.mean_ms * r.count, r.total_ms, 1e-9);
    EXPECT_FALSE(r.name.empty());
  }
  // Each matmul runs the same cuBLAS kernel(s): a multiple of 3.
  const RegionSum matmuls = sum_region(t, "matmuls");
  EXPECT_GE(matmuls.count, 3) << dump(t);
  EXPECT_EQ(matmuls.count % 3, 0) << dump(t);
  EXPECT_EQ(matmuls.graph_count, 0);
  // Two adds: ATen's elementwise add, twice (the one after stop() is not counted).
  const RegionSum adds = sum_region(t, "adds");
  EXPECT_EQ(adds.count, 2) << dump(t);
  ASSERT_EQ(adds.names.size(), 1u) << dump(t);
  EXPECT_NE(adds.names.begin()->find("CUDAFunctor_add"), std::string::npos) << dump(t);
  // The graph's multiply, attributed to the region of the replay and marked as a graph kernel.
  const RegionSum replay = sum_region(t, "graph");
  EXPECT_EQ(replay.count, 1) << dump(t);
  EXPECT_EQ(replay.graph_count, 1) << dump(t);
  ASSERT_EQ(replay.names.size(), 1u);
  EXPECT_NE(replay.names.begin()->find("Mul"), std::string::npos) << dump(t);
  EXPECT_EQ(t.kernels, matmuls.count + 2 + 1);
  EXPECT_EQ(t.graph_kernels, 1);

  // One stream: the kernels ran one after another inside the events' span of the same work.
  EXPECT_GT(t.kernel_ms, 0);
  EXPECT_LE(t.kernel_ms, t.window_ms + 1e-6);
  EXPECT_LE(t.window_ms, times.span_ms * 1.05 + 0.05)
      << "CUPTI window " << t.window_ms << " ms, event span " << times.span_ms << " ms";
  EXPECT_GT(t.host_ms, 0);

  // collect() handed the sample out: nothing left, and a new sample starts clean.
  EXPECT_EQ(kernels.collect().unavailable, "no block sampled");
  ASSERT_TRUE(kernels.start());
  {
    const ProfileScope scope("adds");
    at::add(a, b);
  }
  kernels.stop();
  c10::cuda::device_synchronize();
  const KernelTable again = kernels.collect();
  EXPECT_EQ(again.kernels, 1) << dump(again);
  EXPECT_EQ(sum_region(again, "adds").count, 1);
#endif
}

#ifdef LONGLIVE_WITH_CUDA
// A graph of `kernels` multiplies on a side stream (as the DiT's graphs are captured).
void capture(at::cuda::CUDAGraph& graph, at::Tensor& x, int kernels) {
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
  c10::cuda::device_synchronize();
  const c10::cuda::CUDAStreamGuard guard(side);
  graph.capture_begin();
  for (int i = 0; i < kernels; ++i) x.mul_(1.0001);
  graph.capture_end();
  c10::cuda::device_synchronize();
}

// Bytes the process's heap grew by over `runs` replays of `graph` (malloc's in-use bytes).
int64_t heap_growth(at::cuda::CUDAGraph& graph, int runs) {
  c10::cuda::device_synchronize();
  const auto before = static_cast<int64_t>(mallinfo2().uordblks);
  for (int i = 0; i < runs; ++i) graph.replay();
  c10::cuda::device_synchronize();
  return static_cast<int64_t>(mallinfo2().uordblks) - before;
}
#endif

// Attached, CUPTI keeps a few small allocations for every kernel the process runs, sampled or
// not (docs/reliability.md); release() detaches it and the heap stops growing. A later sample
// attaches it again and still lists the kernels of a graph captured before the detach and of one
// captured while detached. (Single-threaded: in the studio, with other threads using CUDA, a
// detach aborted the process, so the engine never detaches; it only attaches mid-stream.)
TEST(KernelProfilerDetach, ReleaseStopsTheGrowthAndASampleAttachesAgain) {
#ifndef LONGLIVE_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!KernelProfiler::built_with_cupti()) GTEST_SKIP() << KernelProfiler::unavailable_reason();
  ASSERT_EQ(KernelProfiler::prepare(), "");
  ASSERT_TRUE(KernelProfiler::attached());
  constexpr int kKernels = 256, kRuns = 200;
  const auto opts = at::TensorOptions().device(at::kCUDA, 0).dtype(at::kFloat);
  at::Tensor x = at::ones({4096}, opts);
  at::cuda::CUDAGraph before_detach;
  capture(before_detach, x, kKernels);
  heap_growth(before_detach, 20);  // first replays may allocate once
  const int64_t attached = heap_growth(before_detach, kRuns);

  ASSERT_TRUE(KernelProfiler::release());
  EXPECT_FALSE(KernelProfiler::attached());
  EXPECT_FALSE(KernelProfiler::release());  // nothing left to detach
  heap_growth(before_detach, 20);
  const int64_t detached = heap_growth(before_detach, kRuns);
  std::printf("heap growth over %d kernels in graphs: %lld B attached, %lld B detached\n",
              kKernels * kRuns, static_cast<long long>(attached), static_cast<long long>(detached));
  EXPECT_LT(detached, 64 << 10) << "attached: " << attached << " B";

  at::cuda::CUDAGraph while_detached;
  at::Tensor y = at::ones({4096}, opts);
  capture(while_detached, y, kKernels);
  KernelProfiler kernels;
  ASSERT_TRUE(kernels.start()) << kernels.last_error();
  EXPECT_TRUE(KernelProfiler::attached());
  {
    const ProfileScope scope("before_detach");
    before_detach.replay();
  }
  {
    const ProfileScope scope("while_detached");
    while_detached.replay();
  }
  kernels.stop();
  c10::cuda::device_synchronize();
  const KernelTable t = kernels.collect();
  ASSERT_TRUE(t.unavailable.empty()) << t.unavailable;
  EXPECT_EQ(sum_region(t, "before_detach").graph_count, kKernels) << dump(t);
  EXPECT_EQ(sum_region(t, "while_detached").graph_count, kKernels) << dump(t);
  EXPECT_EQ(t.graph_kernels, 2 * kKernels);
#endif
}

// Launch calls only (false) lost the regions on the H200 (CUDA 13): only the default, every API
// call traced, is held to the region attribution.
INSTANTIATE_TEST_SUITE_P(Apis, KernelProfilerGpu, ::testing::Values(true),
                         [](const auto& info) { return info.param ? "AllApis" : "LaunchCalls"; });

}  // namespace
}  // namespace longlive::test
