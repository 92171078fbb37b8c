// The kernel profiler on the DiT stream (GPU only; skips without one): a block that replays CUDA
// graphs files the graphs' kernels under dit_graph, an eager block under the model's regions, and
// each region's kernels fit in that region's CUDA-event time.
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/generator.h"
#include "longlive/kernel_profiler.h"
#include "longlive/profiler.h"

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace longlive::test {
namespace {

struct RegionSum {
  int64_t count = 0, graph_count = 0;
  double ms = 0;
};

RegionSum sum_region(const KernelTable& t, const std::string& region) {
  RegionSum s;
  for (const KernelRow& r : t.rows) {
    if (r.region != region) continue;
    s.count += r.count;
    s.graph_count += r.graph_count;
    s.ms += r.total_ms;
  }
  return s;
}

TEST(DitKernels, GraphKernelsUnderDitGraphAndEagerOnesUnderTheModelsRegions) {
#ifndef LONGLIVE_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!KernelProfiler::built_with_cupti()) GTEST_SKIP() << KernelProfiler::unavailable_reason();
  ASSERT_EQ(KernelProfiler::prepare(), "");  // before the graphs are captured, as in the studio
  const WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions o = options_from_stream(stream);
  o.device = at::Device(at::kCUDA, 0);
  o.dtype = at::kBFloat16;
  o.runtime.fused_kernels = true;
  o.runtime.cuda_graphs = true;
  StreamGenerator g(weights, o);
  ASSERT_TRUE(g.cuda_graphs_active());
  g.start(at::randn({1, 8, o.model.text_dim}), 1);
  for (int i = 0; i < 8; ++i) g.next_block();  // every plan seen, captured and replayed

  // A block of graph replays: the DiT's kernels arrive as graph nodes under dit_graph.
  const int64_t replays = g.stats().graph_replays;
  KernelProfiler kernels;
  ASSERT_TRUE(kernels.start()) << kernels.last_error();
  g.next_block();
  kernels.stop();
  c10::cuda::device_synchronize();
  const KernelTable graphs = kernels.collect();
  const std::string text = "\n" + format_kernel_table(graphs);
  ASSERT_GT(g.stats().graph_replays, replays);
  const RegionSum dit = sum_region(graphs, "dit_graph");
  EXPECT_GT(dit.count, 0) << text;
  EXPECT_EQ(dit.graph_count, dit.count) << text;
  EXPECT_EQ(graphs.graph_kernels, dit.count) << text;  // no graph kernels elsewhere
  EXPECT_GT(dit.ms, 0.5 * graphs.kernel_ms) << text;   // the DiT is most of a block

  // An eager block under a RegionProfiler: the model's regions, and no graph kernels.
  RegionProfiler profiler(o.device);
  profiler.activate();
  ASSERT_TRUE(kernels.start()) << kernels.last_error();
  g.next_block();
  kernels.stop();
  const RegionTimes times = profiler.collect();
  profiler.deactivate();
  c10::cuda::device_synchronize();
  const KernelTable eager = kernels.collect();
  const std::string eager_text = "\n" + format_kernel_table(eager);
  EXPECT_EQ(eager.graph_kernels, 0) << eager_text;
  EXPECT_EQ(sum_region(eager, "dit_graph").count, 0) << eager_text;
  for (const char* region :
       {"gemm", "norm_modulate", "rms_rope", "self_attention", "cross_attention", "head"}) {
    EXPECT_GT(sum_region(eager, region).count, 0) << region << eager_text;
  }
  // One stream: each region's kernels ran inside its events.
  for (const auto& [region, ms] : times.ms) {
    const RegionSum r = sum_region(eager, region);
    EXPECT_LE(r.ms, ms * 1.05 + 0.05) << region << ": kernels " << r.ms << " ms, events " << ms;
  }
#endif
}

}  // namespace
}  // namespace longlive::test
