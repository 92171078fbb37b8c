// The style-LoRA side path on the GPU (skipped without CUDA; packaging/device runs it): in the
// fused layer loop (and with FP8 linears) against the plain bf16 loop with the same faders; CUDA
// graphs replaying the side path with the fader scales as a device input (a fader move is no
// recapture) against the eager loop; and the eager side path against the weights baked on the
// device (bf16, and FP8 re-quantised from the merged bf16).
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/style_lora.h"
#include "model/causal_wan.h"

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
  GeneratorOptions plain = options_from_stream(stream);
  // The DiT's sizes from the fixture set's own metadata (the GPU box's committed set is smaller
  // than WanConfig::tiny()).
  auto lora = std::make_shared<StyleLora>(
      map_style_lora(WeightStore::open(fixture("dit_lora.safetensors")), plain.model, "fixture"));
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
  EXPECT_GT(stats.graph_replays, 0);
  std::cout << "[ drift    ] LoRA effect " << lora_effect << ", fused " << fused_drift << ", fp8 "
            << fp8_drift << ", graph replays " << stats.graph_replays << "\n";
}

struct GpuLoraRun {
  at::Tensor latents;  // every block, concatenated on the frame axis
  GeneratorStats stats;
};

const std::vector<double> kMoves = {1.2, 1.2, 1.2, 1.2, 1.2, 0.5, 0.5, 1.0, 1.0, 1.0};

// One block per entry of `strengths`, the fader set to it before the block (a move keeps the set
// of active LoRAs: a copy into the scales). `bake`: merged into the device weights at
// strengths[0] first and run with the fader at 0, up to the first move.
GpuLoraRun run_faders(const WeightStore& weights, const WeightStore& stream,
                      const GeneratorOptions& o, const std::shared_ptr<const StyleLora>& lora,
                      const std::vector<double>& strengths, bool bake = false) {
  StreamGenerator g(weights, o);
  if (bake) g.model()->merge_style_loras({{lora, strengths[0]}});
  g.set_style_loras({{lora, bake ? 0.0 : strengths[0]}});
  g.start(stream.get("prompt.A"), 3);
  GpuLoraRun r;
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < strengths.size(); ++i) {
    if (bake && strengths[i] != strengths[0]) break;
    if (!bake) g.set_style_loras({{lora, strengths[i]}});
    out.push_back(g.next_block().to(at::kCPU));
  }
  r.stats = g.stats();
  r.latents = at::cat(out, 1);
  return r;
}

TEST(StyleLoraGpu, GraphsReplayTheSidePathAcrossFaderMovesAndBakingMatchesIt) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU paths are tested on the GPU box";
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions eager = options_from_stream(stream);
  auto lora = std::make_shared<StyleLora>(
      map_style_lora(WeightStore::open(fixture("dit_lora.safetensors")), eager.model, "fixture"));
  eager.device = at::Device(at::kCUDA, 0);
  eager.dtype = at::kBFloat16;
  eager.runtime.fused_kernels = true;
  GeneratorOptions graphs = eager;
  graphs.runtime.cuda_graphs = true;

  // Graph replays with the side path inside, across two fader moves, against the eager loop.
  const GpuLoraRun e = run_faders(weights, stream, eager, lora, kMoves);
  const GpuLoraRun g = run_faders(weights, stream, graphs, lora, kMoves);
  const double graph_drift = relative_l2(g.latents, e.latents);
  EXPECT_LT(graph_drift, 1e-3) << "graphs replay what the eager loop computes";
  EXPECT_GT(g.stats.graph_replays, 0);
  // The moves capture nothing: as many graphs as the same blocks with the fader never moved.
  const GpuLoraRun still =
      run_faders(weights, stream, graphs, lora, std::vector<double>(kMoves.size(), 1.2));
  EXPECT_EQ(g.stats.graph_captures, still.stats.graph_captures);
  EXPECT_EQ(g.stats.graph_replays, still.stats.graph_replays);
  // The side path really is in the replayed graphs: the fader moves change the latents.
  const double lora_effect = relative_l2(still.latents, g.latents);
  EXPECT_GT(lora_effect, 50 * std::max(graph_drift, 1e-6));

  // The eager side path against the weights baked on the device at the same strength (the first
  // five blocks, before the first move): bf16 rounding of W + s B A against W x + s B (A x).
  const GpuLoraRun baked = run_faders(weights, stream, eager, lora, kMoves, true);
  const int64_t frames = baked.latents.size(1);
  const double bake_drift = relative_l2(baked.latents, e.latents.narrow(1, 0, frames));
  EXPECT_LT(bake_drift, 0.02) << "merged bf16 weights drift beyond bf16 rounding";
  // FP8 linears: the merged matrices re-quantised on the device against the FP8 side path.
  GeneratorOptions fp8 = eager;
  fp8.runtime.fp8_linears = true;
  const GpuLoraRun fp8_side = run_faders(weights, stream, fp8, lora, kMoves);
  const GpuLoraRun fp8_baked = run_faders(weights, stream, fp8, lora, kMoves, true);
  const double fp8_bake_drift =
      relative_l2(fp8_baked.latents, fp8_side.latents.narrow(1, 0, frames));
  EXPECT_LT(fp8_bake_drift, 0.3);
  std::cout << "[ graphs   ] side path in graphs vs eager " << graph_drift << " (LoRA effect "
            << lora_effect << " of the moves), replays " << g.stats.graph_replays
            << ", eager forwards " << g.stats.graph_eager_forwards << ", captures "
            << g.stats.graph_captures << " (" << still.stats.graph_captures << " without moves)\n"
            << "[ bake     ] baked vs side path bf16 " << bake_drift << ", fp8 " << fp8_bake_drift
            << "\n";
}

}  // namespace
}  // namespace longlive::test
