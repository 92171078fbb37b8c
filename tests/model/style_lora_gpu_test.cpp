// The style-LoRA side path on the GPU (skipped without CUDA; packaging/device runs it): in the
// fused layer loop (and with FP8 linears) against the plain bf16 loop with the same faders, and
// CUDA graphs paused while a fader is up, replaying again at 0.
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/style_lora.h"

namespace longlive::test {
namespace {

double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

TEST(StyleLoraGpu, FusedLoopWithSidePathStaysCloseToThePlainLoop) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU paths are tested on the GPU box";
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  auto lora = std::make_shared<StyleLora>(map_style_lora(
      WeightStore::open(fixture("dit_lora.safetensors")), WanConfig::tiny(), "fixture"));
  GeneratorOptions plain = options_from_stream(stream);
  plain.device = at::Device(at::kCUDA, 0);
  plain.dtype = at::kBFloat16;
  auto run = [&](const GeneratorOptions& o, double strength, GeneratorStats* stats = nullptr) {
    StreamGenerator g(weights, o);
    g.set_style_loras({{lora, strength}});
    g.start(stream.get("prompt.A"), 3);
    std::vector<at::Tensor> out;
    for (int i = 0; i < 10; ++i) {
      if (i == 3) g.switch_prompt(stream.get("prompt.B"));
      if (i == 4) g.set_style_loras({{lora, strength / 2}});
      if (i == 6) g.set_style_loras({{lora, 0.0}});  // graphs may replay from here
      out.push_back(g.next_block().to(at::kCPU));
    }
    if (stats) *stats = g.stats();
    return at::cat(out, 1);
  };
  const at::Tensor reference = run(plain, 1.2);
  ASSERT_TRUE(reference.isfinite().all().item<bool>());
  // The faders matter far more than the fast paths' rounding.
  const double lora_effect = relative_l2(run(plain, 0.0), reference);
  EXPECT_GT(lora_effect, 0.05);

  GeneratorOptions fused = plain;
  fused.runtime.fused_kernels = true;
  const double fused_drift = relative_l2(run(fused, 1.2), reference);
  EXPECT_LT(fused_drift, 0.02) << "fused loop + side path drift beyond bf16 rounding";

  GeneratorOptions fp8 = fused;
  fp8.runtime.fp8_linears = true;
  const double fp8_drift = relative_l2(run(fp8, 1.2), reference);
  EXPECT_LT(fp8_drift, 0.3);

  GeneratorOptions graphs = fused;
  graphs.runtime.cuda_graphs = true;
  GeneratorStats stats;
  const double graph_drift = relative_l2(run(graphs, 1.2, &stats), run(fused, 1.2));
  EXPECT_EQ(graph_drift, 0.0) << "graphs replay what the eager loop computes";
  EXPECT_GT(stats.graph_replays, 0);  // blocks 6 to 9 (faders at 0)
  std::cout << "[ drift    ] LoRA effect " << lora_effect << ", fused " << fused_drift << ", fp8 "
            << fp8_drift << ", graph replays " << stats.graph_replays << "\n";
}

}  // namespace
}  // namespace longlive::test
