// ForwardArgs::kv_only (the context pass and re-caches): the last layer stops once its K/V are in
// the cache and the head is skipped. The cache must end exactly as after a full forward, on every
// path: plain ATen (CPU, and CUDA when there is one), the fused loop and its CUDA graphs (CUDA).
// Sizes come from the dit_stream fixture's metadata.
#include <gtest/gtest.h>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "dit_fixture.h"
#include "model/causal_wan.h"
#include "pipeline/dit_graphs.h"

namespace longlive::test {
namespace {

enum class Runner { eager, graphs };

// Three forwards into `kv` (a block, the next block attending it, a re-cache of both), each
// full or kv_only; returns the outputs (undefined where kv_only).
std::vector<at::Tensor> run_forwards(const CausalWanModel& model, KvCache& kv,
                                     const CrossAttnCache& cross, const GeneratorOptions& o,
                                     bool kv_only, Runner runner) {
  std::unique_ptr<DitGraphRunner> graphs;
  if (runner == Runner::graphs) graphs = std::make_unique<DitGraphRunner>(model);
  const auto options = at::TensorOptions().dtype(at::kFloat).device(model.device());
  const int64_t f = o.frames_per_block;
  std::vector<at::Tensor> outputs;
  auto forward = [&](int64_t first, int64_t frames, KvWriteKind kind, uint64_t seed) {
    const KvCache::Plan plan = kv.plan(first, frames, kind, o.global_sink);
    at::manual_seed(seed);
    const at::Tensor latents =
        at::randn({1, frames, o.model.in_channels, o.latent_height, o.latent_width}, options);
    CausalWanModel::ForwardArgs args =
        model.prepare(latents, at::zeros({1, frames}, options), plan);
    args.kv_only = kv_only;
    // Through the graph runner: seen once (eager), captured, then replayed.
    at::Tensor out;
    for (int i = 0; i < (graphs ? 3 : 1); ++i)
      out = graphs ? graphs->run(args, kv, plan, cross) : model.run(args, kv, plan, cross);
    kv.commit(plan);
    outputs.push_back(out);
  };
  forward(0, f, KvWriteKind::block, 1);
  forward(f, f, KvWriteKind::block, 2);
  forward(0, 2 * f, KvWriteKind::recache, 3);
  if (graphs) {
    EXPECT_GT(graphs->stats().replays, 0);
  }
  return outputs;
}

void expect_same_cache(const DitStream& s, at::Device device, at::ScalarType dtype,
                       const DitRuntime& runtime, Runner runner, const char* name) {
  const GeneratorOptions& o = s.options;
  const CausalWanModel model(s.weights, o.model, device, dtype, runtime);
  CrossAttnCache cross;
  const std::string first_prompt =
      metadata_json(s.stream, "calls")[0].at("prompt").get<std::string>();
  model.build_cross_cache(s.prompt(first_prompt).to(device), cross);
  const KvCacheShape shape =
      model.kv_shape(o.latent_height, o.latent_width, o.sink_frames, o.local_attn_frames);
  const auto cache_options = at::TensorOptions().dtype(dtype).device(device);
  KvCache full(shape, cache_options), kv_only(shape, cache_options);
  const std::vector<at::Tensor> full_out = run_forwards(model, full, cross, o, false, runner);
  const std::vector<at::Tensor> only_out = run_forwards(model, kv_only, cross, o, true, runner);
  for (size_t i = 0; i < full_out.size(); ++i) {
    EXPECT_TRUE(full_out[i].defined()) << name;
    EXPECT_FALSE(only_out[i].defined()) << name << ": a kv_only forward returns nothing";
  }
  ASSERT_EQ(full.slot_frames(), kv_only.slot_frames()) << name;
  for (int64_t layer = 0; layer < shape.layers; ++layer) {
    for (const bool values : {false, true}) {
      const at::Tensor a = full.positional(layer, values).to(at::kCPU, at::kFloat);
      const at::Tensor b = kv_only.positional(layer, values).to(at::kCPU, at::kFloat);
      ASSERT_GT(a.abs().max().item<double>(), 0) << name << ": layer " << layer << " was written";
      EXPECT_EQ((a - b).abs().max().item<double>(), 0.0)
          << name << ": layer " << layer << (values ? " values" : " keys");
    }
  }
}

TEST(KvOnlyForward, LeavesTheCacheAsAFullForwardOnTheCpu) {
  const DitStream s;
  expect_same_cache(s, at::kCPU, at::kFloat, {}, Runner::eager, "cpu plain");
}

TEST(KvOnlyForward, LeavesTheCacheAsAFullForwardOnEveryGpuPath) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the GPU paths are tested on the GPU box";
  const DitStream s;
  const at::Device cuda(at::kCUDA, 0);
  expect_same_cache(s, cuda, at::kBFloat16, {}, Runner::eager, "cuda plain");
  const DitRuntime fused{.fused_kernels = true};
  expect_same_cache(s, cuda, at::kBFloat16, fused, Runner::eager, "cuda fused");
  expect_same_cache(s, cuda, at::kBFloat16, fused, Runner::graphs, "cuda fused, graphs");
}

}  // namespace
}  // namespace longlive::test
