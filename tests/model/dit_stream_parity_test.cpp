// Parity of the streaming DiT loop with the reference LongLive v1.0 run recorded in
// dit_stream*.safetensors: every denoising call, both re-caches, the KV cache after every block,
// and the returned latents. Sizes come from the fixtures' metadata.
#include <gtest/gtest.h>

#include "cache/kv_cache.h"
#include "dit_fixture.h"
#include "sampler/flow_match.h"

namespace longlive::test {
namespace {

constexpr double kTolerance = 1e-4;

struct StreamRun {
  int64_t checked_calls = 0;
  int64_t checked_kv = 0;
};

int64_t valid_tokens(const KvCache& kv) {
  int64_t used = 0;
  for (auto f : kv.slot_frames()) used += f >= 0;
  return used * kv.shape().tokens_per_frame;
}

void expect_kv_matches(const KvCache& kv, const WeightStore& stream, const std::string& prefix,
                       StreamRun& run, double tolerance) {
  for (int64_t layer = 0; layer < kv.shape().layers; ++layer) {
    const std::string base = prefix + ".kv.l" + std::to_string(layer) + ".";
    if (!stream.contains(base + "k")) return;  // variant without KV snapshots
    const int64_t expected_valid = stream.get(base + "local_end_index").item<int64_t>();
    ASSERT_EQ(valid_tokens(kv), expected_valid) << base;
    for (bool values : {false, true}) {
      const at::Tensor ours = kv.positional(layer, values).narrow(1, 0, expected_valid);
      const at::Tensor ref = stream.get(base + (values ? "v" : "k")).narrow(1, 0, expected_valid);
      EXPECT_LT(max_abs_diff(ours, ref), tolerance) << base << (values ? "v" : "k");
    }
    ++run.checked_kv;
  }
}

StreamRun run_stream(const std::string& file, bool skip_dropped, at::Device device = at::kCPU,
                     double kTolerance = longlive::test::kTolerance) {
  const WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture(file));
  GeneratorOptions options = options_from_stream(stream);
  options.skip_dropped_recache_frames = skip_dropped;
  options.device = device;
  StreamGenerator generator(weights, options);
  const auto calls = metadata_json(stream, "calls");
  const int64_t steps = static_cast<int64_t>(options.denoising_steps.size());
  auto prompt = [&](const std::string& name) { return stream.get("prompt." + name); };

  StreamRun run;
  std::vector<at::Tensor> outputs;
  bool started = false;
  for (const auto& call : calls) {
    const std::string name = call.at("name");
    const std::string kind = call.at("kind");
    if (kind == "recache") {
      generator.switch_prompt(prompt(call.at("prompt")));
      BlockTrace trace;
      EXPECT_TRUE(generator.apply_pending_switch(&trace));
      const at::Tensor ref = stream.get(name + ".flow_pred");
      const int64_t ran = trace.recache_flow.size(1);
      if (!skip_dropped) {
        EXPECT_EQ(ran, ref.size(1));
      }
      EXPECT_LT(max_abs_diff(trace.recache_flow, ref.narrow(1, ref.size(1) - ran, ran)), kTolerance)
          << name;
      expect_kv_matches(generator.kv_cache(), stream, name.substr(0, name.rfind('.')) + ".recache",
                        run, kTolerance);
      ++run.checked_calls;
      continue;
    }
    if (name.size() < 3 || name.substr(name.size() - 3) != ".s0") continue;
    const std::string block = name.substr(0, name.find('.'));
    if (!started) {
      generator.start(prompt(call.at("prompt")), 0);
      generator.set_noise_source(
          std::make_unique<RecordedNoise>(stream, "", options.frames_per_block));
      started = true;
    }
    BlockTrace trace;
    outputs.push_back(generator.next_block(&trace));
    EXPECT_EQ(static_cast<int64_t>(trace.step_flows.size()), steps);
    if (static_cast<int64_t>(trace.step_flows.size()) != steps) return run;
    for (int64_t s = 0; s < steps; ++s) {
      const std::string step = block + ".s" + std::to_string(s) + ".";
      EXPECT_FLOAT_EQ(generator.sampler().timesteps()[s],
                      stream.get(step + "t").flatten()[0].item<float>());
      EXPECT_FLOAT_EQ(generator.sampler().step_sigmas()[s],
                      stream.get(step + "sigma").flatten()[0].item<float>());
      EXPECT_LT(max_abs_diff(trace.step_inputs[s], stream.get(step + "x_in")), kTolerance) << step;
      EXPECT_LT(max_abs_diff(trace.step_flows[s], stream.get(step + "flow_pred")), kTolerance)
          << step;
      EXPECT_LT(max_abs_diff(trace.step_x0[s], stream.get(step + "x0_pred")), kTolerance) << step;
      ++run.checked_calls;
    }
    expect_kv_matches(generator.kv_cache(), stream, block, run, kTolerance);
  }
  const at::Tensor all = at::cat(outputs, 1);
  EXPECT_LT(max_abs_diff(all, stream.get("output_latents")), kTolerance);
  EXPECT_EQ(generator.frames_generated(), stream.get("output_latents").size(1));
  return run;
}

TEST(DitStreamParity, GlobalSinkMatchesEveryCallAndKvSnapshot) {
  const StreamRun run = run_stream("dit_stream.safetensors", /*skip_dropped=*/true);
  EXPECT_GT(run.checked_calls, 0);
  EXPECT_GT(run.checked_kv, 0);
}

TEST(DitStreamParity, GlobalSinkFullRecacheMatchesAllFrames) {
  run_stream("dit_stream.safetensors", /*skip_dropped=*/false);
}

TEST(DitStreamParity, NoGlobalSinkMatchesEveryCall) {
  const StreamRun run = run_stream("dit_stream_no_global_sink.safetensors", /*skip_dropped=*/true);
  EXPECT_GT(run.checked_calls, 0);
}

// GPU suite (skipped without CUDA): the same fixtures on the GPU in fp32 with TF32 off.
TEST(DitStreamParityGpu, Fp32MatchesEveryCallWithin1e3) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
  auto& context = at::globalContext();
  const bool tf32 = context.allowTF32CuBLAS();
  context.setAllowTF32CuBLAS(false);
  context.setAllowTF32CuDNN(false);
  const StreamRun run =
      run_stream("dit_stream.safetensors", /*skip_dropped=*/true, at::Device(at::kCUDA, 0), 1e-3);
  run_stream("dit_stream_no_global_sink.safetensors", true, at::Device(at::kCUDA, 0), 1e-3);
  context.setAllowTF32CuBLAS(tf32);
  EXPECT_GT(run.checked_calls, 0);
}

TEST(FlowMatchSampler, TablesMatchTheReferenceScheduler) {
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  const GeneratorOptions o = options_from_stream(stream);
  FlowMatchSampler sampler(o.denoising_steps, o.warp_denoising_step, o.timestep_shift);
  EXPECT_EQ(max_abs_diff(sampler.table_timesteps(), stream.get("schedule.scheduler_timesteps")),
            0.0);
  EXPECT_EQ(max_abs_diff(sampler.table_sigmas(), stream.get("schedule.scheduler_sigmas")), 0.0);
  const at::Tensor steps = stream.get("schedule.denoising_step_list");
  const at::Tensor sigmas = stream.get("schedule.step_sigmas");
  ASSERT_EQ(static_cast<int64_t>(sampler.timesteps().size()), steps.numel());
  for (int64_t i = 0; i < steps.numel(); ++i) {
    EXPECT_FLOAT_EQ(sampler.timesteps()[i], steps[i].item<float>());
    EXPECT_FLOAT_EQ(sampler.step_sigmas()[i], sigmas[i].item<float>());
  }
}

}  // namespace
}  // namespace longlive::test
