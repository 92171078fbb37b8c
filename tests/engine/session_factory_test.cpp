// The session factory on the tiny model: one preset mapping, and hot preset changes that keep the
// text encoder, the prompt cache and unchanged weights, and continue the video from its frame.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "engine_support.h"
#include "longlive/async_decoder.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/performance.h"
#include "longlive/session.h"
#include "longlive/text_encoder.h"

namespace longlive::test {
namespace {

ModelSpec tiny() { return tiny_model(at::Device(at::kCPU)); }

Preset base_preset() {
  Preset p;
  p.name = "base";
  p.local_attn_frames = 9;
  return p;
}

// Another preset that changes the generator but not the DiT: fewer steps, a shorter window.
Preset lighter_preset() {
  Preset p = base_preset();
  p.name = "lighter";
  p.denoising_steps = {1000, 500};
  p.local_attn_frames = 6;
  return p;
}

std::vector<at::Tensor> blocks_of(StreamGenerator& g, int n) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(g.next_block().clone());
  return out;
}

TEST(SessionFactory, PresetChangeMidStreamKeepsWeightsTextAndCacheAndContinues) {
  SessionFactory factory(tiny());
  auto session = factory.open(base_preset(), 32, 32);
  session->generator->start(session->embed(PromptMix::single("a red fox")), 5);
  blocks_of(*session->generator, 4);
  const SessionFactory::Stats loaded = factory.stats();
  const TextEncoder* text = session->text.get();
  const PromptCache* prompts = session->prompts.get();
  const AsyncDecoder* decoder = session->decoder.get();
  const int64_t frame = session->generator->frames_generated();

  const PresetChange change = factory.change_preset(*session, lighter_preset());
  EXPECT_TRUE(change.generator_rebuilt);
  EXPECT_TRUE(change.stream_continued);
  EXPECT_FALSE(change.dit_rebuilt);
  EXPECT_FALSE(change.decoder_changed);
  // No weights read or built, the same text encoder, prompt cache and decoder objects.
  EXPECT_EQ(factory.stats().weight_loads, loaded.weight_loads);
  EXPECT_EQ(factory.stats().dit_builds, loaded.dit_builds);
  EXPECT_EQ(session->text.get(), text);
  EXPECT_EQ(session->prompts.get(), prompts);
  EXPECT_EQ(session->decoder.get(), decoder);
  EXPECT_TRUE(session->prompts->contains("a red fox"));
  EXPECT_EQ(session->preset.name, "lighter");
  // The video goes on from its frame: no restart.
  EXPECT_EQ(session->generator->frames_generated(), frame);
  const std::vector<at::Tensor> hot = blocks_of(*session->generator, 3);
  EXPECT_EQ(session->generator->frames_generated(), frame + 3 * 3);

  // Exactly what a fresh session of the new preset makes after re-caching the same window.
  SessionFactory other(tiny());
  auto first = other.open(base_preset(), 32, 32);
  first->generator->start(first->embed(PromptMix::single("a red fox")), 5);
  blocks_of(*first->generator, 4);
  auto fresh = other.open(lighter_preset(), 32, 32);
  fresh->generator->resume(first->generator->release_state());
  const std::vector<at::Tensor> expected = blocks_of(*fresh->generator, 3);
  for (size_t i = 0; i < hot.size(); ++i) EXPECT_TRUE(at::equal(hot[i], expected[i])) << i;
}

// A change that keeps the weights, their precision and the cache geometry keeps the caches: no
// re-cache. On the CPU, fused kernels, CUDA graphs and the memory pool are GPU paths, so the video
// then goes on bit for bit as if nothing had changed; new sampling keeps the caches too.
TEST(SessionFactory, ChangeOfLayerLoopOrSamplingKeepsTheCachesWithoutRecache) {
  constexpr int kBefore = 4, kAfter = 3;
  SessionFactory reference_factory(tiny());
  auto reference = reference_factory.open(base_preset(), 32, 32);
  reference->generator->start(reference->embed(PromptMix::single("a red fox")), 5);
  blocks_of(*reference->generator, kBefore);
  const std::vector<at::Tensor> expected = blocks_of(*reference->generator, kAfter);

  SessionFactory factory(tiny());
  auto session = factory.open(base_preset(), 32, 32);
  session->generator->start(session->embed(PromptMix::single("a red fox")), 5);
  blocks_of(*session->generator, kBefore);
  const StreamGenerator* generator = session->generator.get();
  const int64_t recaches = session->generator->stats().recaches;
  const SessionFactory::Stats loaded = factory.stats();

  Preset fast = base_preset();
  fast.name = "fast";
  fast.fused_kernels = true;
  fast.cuda_graphs = true;
  fast.memory_pool = true;
  const PresetChange change = factory.change_preset(*session, fast);
  EXPECT_TRUE(change.caches_kept);
  EXPECT_TRUE(change.stream_continued);
  EXPECT_FALSE(change.generator_rebuilt);
  EXPECT_FALSE(change.dit_rebuilt);
  EXPECT_EQ(session->generator.get(), generator);
  EXPECT_EQ(factory.stats().weight_loads, loaded.weight_loads);
  EXPECT_EQ(factory.stats().dit_builds, loaded.dit_builds);
  const std::vector<at::Tensor> hot = blocks_of(*session->generator, kAfter);
  ASSERT_EQ(hot.size(), expected.size());
  for (size_t i = 0; i < hot.size(); ++i) EXPECT_TRUE(at::equal(hot[i], expected[i])) << i;
  EXPECT_EQ(session->generator->stats().recaches, recaches);

  Preset fewer_steps = fast;
  fewer_steps.name = "fewer steps";
  fewer_steps.denoising_steps = {1000, 500};
  const PresetChange sampling = factory.change_preset(*session, fewer_steps);
  EXPECT_TRUE(sampling.caches_kept);
  EXPECT_EQ(session->generator->options().denoising_steps, fewer_steps.denoising_steps);
  const at::Tensor next = session->generator->next_block();
  EXPECT_TRUE(at::isfinite(next).all().item<bool>());
  EXPECT_EQ(session->generator->stats().recaches, recaches);
  EXPECT_EQ(session->generator->frames_generated(), (kBefore + kAfter + 1) * 3);

  // A pending prompt cut survives the change and still re-caches on the next block.
  session->generator->switch_prompt(session->embed(PromptMix::single("a blue bird")));
  EXPECT_TRUE(factory.change_preset(*session, fast).caches_kept);
  session->generator->next_block();
  EXPECT_EQ(session->generator->stats().recaches, recaches + 1);
}

// text_encoder_device changes with a preset (low_memory runs umT5 on the CPU): the resident
// encoder moves, nothing is read, the prompt cache survives and new prompts encode there.
TEST(SessionFactory, TextEncoderDeviceChangeMovesTheResidentEncoder) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: text placement needs a GPU to differ";
  ModelSpec model = tiny();
  model.device = at::Device(at::kCUDA, 0);
  SessionFactory factory(model);
  auto session = factory.open(base_preset(), 32, 32);
  session->generator->start(session->embed(PromptMix::single("a red fox")), 5);
  session->generator->next_block();
  ASSERT_TRUE(session->text->options().device.is_cuda());
  const TextEncoder* text = session->text.get();
  const SessionFactory::Stats loaded = factory.stats();

  Preset on_cpu = base_preset();
  on_cpu.name = "text on cpu";
  on_cpu.text_encoder_device = PlacementDevice::cpu;
  const at::Tensor gpu_embeddings = session->prompts->get("a green owl").cpu();
  const PresetChange change = factory.change_preset(*session, on_cpu);
  EXPECT_TRUE(change.text_encoder_moved);
  EXPECT_EQ(session->text.get(), text);
  EXPECT_TRUE(session->text->options().device.is_cpu());
  EXPECT_EQ(factory.stats().weight_loads, loaded.weight_loads);
  EXPECT_EQ(factory.stats().text_moves, loaded.text_moves + 1);
  EXPECT_TRUE(session->prompts->contains("a red fox"));
  const at::Tensor cpu_embeddings = session->text->encode("a green owl");
  EXPECT_TRUE(cpu_embeddings.device().is_cpu());
  EXPECT_TRUE(at::allclose(cpu_embeddings, gpu_embeddings, 1e-4, 1e-5));
  EXPECT_TRUE(session->embed(PromptMix::single("a new prompt")).device().is_cuda());

  const PresetChange back = factory.change_preset(*session, base_preset());
  EXPECT_TRUE(back.text_encoder_moved);
  EXPECT_TRUE(session->text->options().device.is_cuda());
  EXPECT_EQ(factory.stats().weight_loads, loaded.weight_loads);
}

// FP8 linears on and off (quality <-> turbo_fp8) build no DiT: the FP8 copies are quantised on
// the device from the running DiT's 16-bit matrices, and the video equals a fresh FP8 session's
// resumed from the same stream. Another dtype (fp16) is built once from the resident host copy
// and kept on the GPU (the device has far more than 15 % free here).
TEST(SessionFactory, PrecisionChangesQuantiseOnTheDeviceAndKeepWeightSets) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: FP8 linears and kept DiTs are GPU paths";
  ModelSpec model = tiny();
  model.device = at::Device(at::kCUDA, 0);
  Preset plain = base_preset();
  plain.fused_kernels = true;
  Preset fp8 = plain;
  fp8.name = "fp8";
  fp8.dtype = ComputeDType::fp8;
  Preset fp16 = plain;
  fp16.name = "fp16";
  fp16.dtype = ComputeDType::fp16;
  auto start = [&](Session& s) {
    s.generator->start(at::ones({1, 8, s.generator->options().model.text_dim},
                                at::TensorOptions().device(model.device.value())) *
                           0.1,
                       5);
    blocks_of(*s.generator, 2);
  };

  SessionFactory factory(model, {.text_encoder = false, .live_decoder = false});
  auto session = factory.open(plain, 32, 32);
  start(*session);
  const int64_t builds = factory.stats().dit_builds;
  const int64_t loads = factory.stats().weight_loads;
  const PresetChange to_fp8 = factory.change_preset(*session, fp8);
  EXPECT_FALSE(to_fp8.dit_rebuilt);
  EXPECT_EQ(factory.stats().dit_builds, builds);
  EXPECT_TRUE(session->generator->fp8_linears_active());
  const std::vector<at::Tensor> hot = blocks_of(*session->generator, 2);

  SessionFactory other(model, {.text_encoder = false, .live_decoder = false});
  auto first = other.open(plain, 32, 32);
  start(*first);
  auto fresh = other.open(fp8, 32, 32);
  fresh->generator->resume(first->generator->release_state());
  const std::vector<at::Tensor> expected = blocks_of(*fresh->generator, 2);
  for (size_t i = 0; i < hot.size(); ++i) EXPECT_TRUE(at::equal(hot[i], expected[i])) << i;

  for (int round = 0; round < 2; ++round) {
    for (const Preset* p : {&plain, &fp16, &fp8}) {
      factory.change_preset(*session, *p);
      session->generator->next_block();
    }
  }
  EXPECT_EQ(factory.stats().dit_builds, builds + 1);  // fp16, once
  EXPECT_EQ(factory.stats().weight_loads, loads);
}

TEST(SessionFactory, NothingChangesForTheSamePresetAndFastPathsShareTheWeights) {
  SessionFactory factory(tiny());
  auto session = factory.open(base_preset(), 32, 32);
  session->generator->start(session->embed(PromptMix::single("a red fox")), 5);
  blocks_of(*session->generator, 2);
  const StreamGenerator* generator = session->generator.get();
  const PresetChange same = factory.change_preset(*session, base_preset());
  EXPECT_FALSE(same.generator_rebuilt);
  EXPECT_EQ(session->generator.get(), generator);

  // Another layer loop over the same weights (fused kernels: a GPU path, asked for here all the
  // same) shares the DiT's tensors: no build, no load.
  const SessionFactory::Stats before = factory.stats();
  Preset fused = base_preset();
  fused.fused_kernels = true;
  const PresetChange shared = factory.change_preset(*session, fused);
  EXPECT_FALSE(shared.dit_rebuilt);
  EXPECT_TRUE(shared.caches_kept);
  EXPECT_EQ(session->generator.get(), generator);
  EXPECT_EQ(factory.stats().dit_builds, before.dit_builds);
  // FP8 linears share the weights too (quantised on the device where they run: a GPU test);
  // another dtype is rebuilt from the resident host copy (a GPU test: the CPU runs float32).
  Preset fp8 = fused;
  fp8.dtype = ComputeDType::fp8;
  const PresetChange change = factory.change_preset(*session, fp8);
  EXPECT_FALSE(change.dit_rebuilt);
  EXPECT_EQ(factory.stats().dit_builds, before.dit_builds);
  EXPECT_EQ(factory.stats().weight_loads, before.weight_loads);
  EXPECT_EQ(session->generator->frames_generated(), 2 * 3);
  EXPECT_TRUE(at::isfinite(session->generator->next_block()).all().item<bool>());
}

TEST(SessionFactory, OneMappingFromPresetToRuntime) {
  Preset p;
  p.dtype = ComputeDType::fp16;
  p.kv_dtype = KvDType::fp32;
  p.text_encoder_device = PlacementDevice::cpu;
  p.decoder = DecoderKind::wan;
  p.memory_pool = true;
  const RuntimeChoice gpu = choose_runtime(p, at::Device(at::kCUDA, 0));
  EXPECT_EQ(gpu.dit_dtype, at::kHalf);
  EXPECT_EQ(gpu.kv_dtype, at::kFloat);
  EXPECT_TRUE(gpu.text_device.is_cpu());
  EXPECT_EQ(gpu.decoder, DecoderKind::wan);
  EXPECT_TRUE(gpu.reserve_up_front);
  p.kv_dtype = KvDType::fp16;
  EXPECT_EQ(choose_runtime(p, at::Device(at::kCUDA, 0)).kv_dtype, at::kHalf);
  p.dtype = ComputeDType::fp8;
  const RuntimeChoice fp8 = choose_runtime(p, at::Device(at::kCUDA, 0));
  EXPECT_EQ(fp8.dit_dtype, at::kBFloat16);
  EXPECT_TRUE(fp8.dit.fp8_linears && fp8.dit.fp8_attention);
  // The CPU computes in float32 whatever the preset's GPU formats; int8 KV still applies.
  p.kv_dtype = KvDType::int8;
  const RuntimeChoice cpu = choose_runtime(p, at::kCPU);
  EXPECT_EQ(cpu.dit_dtype, at::kFloat);
  EXPECT_EQ(cpu.kv_dtype, at::kChar);
}

// Capabilities of the cards our users have, as probe_capabilities reports them.
DeviceCapabilities card(int sm, bool cudnn_fp8 = true) {
  DeviceCapabilities c;
  c.name = "test card";
  c.sm = c.real_sm = sm;
  c.fused_kernels = sm >= kMinKernelSm;
  if (!c.fused_kernels) c.kernels_error = "our kernels need sm_80+";
  c.bf16 = sm >= 80;
  c.fp8_linears = c.fused_kernels && sm >= kMinFp8LinearSm;
  c.fp8_attention = c.fused_kernels && sm >= kMinFp8AttentionSm && cudnn_fp8;
  return c;
}

RuntimeChoice fp8_request() {
  Preset p;
  p.dtype = ComputeDType::fp8;
  p.fused_kernels = true;
  return choose_runtime(p, at::Device(at::kCUDA, 0));
}

// Each card keeps what it can run of turbo_fp8's fast paths and names every fallback.
TEST(DeviceFit, Fp8PresetOnEachArchitecture) {
  RuntimeChoice hopper = fp8_request();
  fit_to_device(hopper, card(90), "turbo_fp8");
  EXPECT_TRUE(hopper.dit.fused_kernels && hopper.dit.fp8_linears && hopper.dit.fp8_attention);
  EXPECT_TRUE(hopper.fallbacks.empty());

  RuntimeChoice ada = fp8_request();
  fit_to_device(ada, card(89), "turbo_fp8");
  EXPECT_TRUE(ada.dit.fused_kernels && ada.dit.fp8_linears);
  EXPECT_FALSE(ada.dit.fp8_attention);
  ASSERT_EQ(ada.fallbacks.size(), 1u);
  EXPECT_EQ(ada.fallbacks[0],
            "turbo_fp8: FP8 attention unavailable on sm_89 (needs sm_90+), using bf16 attention");

  RuntimeChoice ampere = fp8_request();
  fit_to_device(ampere, card(86), "turbo_fp8");
  EXPECT_TRUE(ampere.dit.fused_kernels);
  EXPECT_FALSE(ampere.dit.fp8_linears || ampere.dit.fp8_attention);
  EXPECT_EQ(ampere.dit_dtype, at::kBFloat16);
  ASSERT_EQ(ampere.fallbacks.size(), 2u);
  EXPECT_NE(ampere.fallbacks[0].find("FP8 linears unavailable on sm_86 (need sm_89+)"),
            std::string::npos);
  EXPECT_NE(ampere.fallbacks[1].find("FP8 attention unavailable on sm_86"), std::string::npos);

  // A Hopper card whose cuDNN (or build) lacks FP8 attention says so instead of blaming sm_90.
  RuntimeChoice no_cudnn = fp8_request();
  fit_to_device(no_cudnn, card(90, /*cudnn_fp8=*/false), "turbo_fp8");
  ASSERT_EQ(no_cudnn.fallbacks.size(), 1u);
  EXPECT_NE(no_cudnn.fallbacks[0].find("no cuDNN FP8 attention"), std::string::npos);
}

// Below sm_80 nothing of ours runs and bf16 becomes fp16: slower, never a failure.
TEST(DeviceFit, TuringRunsThePlainPathInFp16) {
  Preset p;
  p.fused_kernels = true;
  p.kv_dtype = KvDType::bf16;
  RuntimeChoice r = choose_runtime(p, at::Device(at::kCUDA, 0));
  fit_to_device(r, card(75), "balanced");
  EXPECT_FALSE(r.dit.fused_kernels);
  EXPECT_EQ(r.dit_dtype, at::kHalf);
  EXPECT_EQ(r.kv_dtype, at::kHalf);
  EXPECT_EQ(r.text_dtype, r.text_device.is_cuda() ? at::kHalf : at::kFloat);
  ASSERT_EQ(r.fallbacks.size(), 2u);
  EXPECT_EQ(r.fallbacks[0],
            "balanced: fused kernels unavailable (our kernels need sm_80+), using ATen ops");
  EXPECT_EQ(r.fallbacks[1], "balanced: bf16 unavailable on sm_75 (needs sm_80+), using fp16");
}

// The CPU runs the plain float32 path by design: nothing to report.
TEST(DeviceFit, CpuHasNoFallbacks) {
  Preset p;
  p.dtype = ComputeDType::fp8;
  RuntimeChoice r = choose_runtime(p, at::kCPU);
  fit_to_device(r, probe_capabilities(at::kCPU), "turbo_fp8");
  EXPECT_TRUE(r.fallbacks.empty());
  EXPECT_EQ(r.capabilities.describe(), "CPU");
}

// The override lowers a GPU's capability (how the H200 tests every fallback); bad values are
// named. On a machine without CUDA only the error path is observable.
TEST(DeviceFit, ForcedCapability) {
  ::setenv("LONGLIVE_FORCE_SM", "eighty-six", 1);
  EXPECT_EQ(probe_capabilities(at::kCPU).sm, 0);  // the CPU ignores it
  try {
    probe_capabilities(at::Device(at::kCUDA, 0));
    ADD_FAILURE() << "a bad LONGLIVE_FORCE_SM was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LONGLIVE_FORCE_SM=eighty-six"), std::string::npos);
  }
  ::unsetenv("LONGLIVE_FORCE_SM");
  if (!at::hasCUDA()) {
    const DeviceCapabilities none = probe_capabilities(at::Device(at::kCUDA, 0));
    EXPECT_FALSE(none.fused_kernels || none.fp8_linears || none.fp8_attention);
    GTEST_SKIP() << "no CUDA device";
  }
  const DeviceCapabilities real = probe_capabilities(at::Device(at::kCUDA, 0));
  const DeviceCapabilities forced = probe_capabilities(at::Device(at::kCUDA, 0), 86);
  EXPECT_EQ(forced.sm, std::min(86, real.sm));
  EXPECT_EQ(forced.real_sm, real.sm);
  EXPECT_FALSE(forced.fp8_linears || forced.fp8_attention);
  if (real.sm > 86) EXPECT_NE(forced.describe().find("forced; device sm_"), std::string::npos);
  // The factory's sessions honour it: turbo-like FP8 asks fall back, and say so.
  RuntimeChoice r = fp8_request();
  fit_to_device(r, forced, "turbo_fp8");
  EXPECT_FALSE(r.dit.fp8_linears || r.dit.fp8_attention);
  EXPECT_GE(r.fallbacks.size(), 2u);
}

// On a real GPU (the H200 box): sessions forced down to each user architecture open, run the
// fast paths that architecture has and produce finite video.
TEST(DeviceFit, ForcedArchitecturesRunOnTheGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (const int sm : {75, 86, 89, 0}) {
    SCOPED_TRACE(sm ? "forced sm_" + std::to_string(sm) : std::string("the device's own"));
    ModelSpec model;
    model.tiny_random = true;
    model.device = at::Device(at::kCUDA, 0);
    SessionOverrides overrides;
    overrides.force_sm = sm;
    overrides.text_encoder = false;
    overrides.live_decoder = false;
    SessionFactory factory(model, overrides);
    Preset preset = base_preset();
    preset.name = "turbo_fp8";
    preset.dtype = ComputeDType::fp8;
    preset.fused_kernels = true;
    auto session = factory.open(preset, 32, 32);
    const DeviceCapabilities& caps = session->runtime.capabilities;
    StreamGenerator& g = *session->generator;
    EXPECT_EQ(g.fused_kernels_active(), caps.fused_kernels);
    EXPECT_EQ(g.fp8_linears_active(), caps.fp8_linears);
    EXPECT_EQ(g.options().dtype, caps.bf16 ? at::kBFloat16 : at::kHalf);
    if (sm == 75) EXPECT_FALSE(caps.fused_kernels);
    if (sm == 86) EXPECT_TRUE(caps.fused_kernels && !caps.fp8_linears);
    if (sm == 89) EXPECT_TRUE(caps.fp8_linears && !caps.fp8_attention);
    EXPECT_EQ(session->runtime.fallbacks.empty(),
              caps.fused_kernels && caps.bf16 && caps.fp8_linears && caps.fp8_attention);
    const auto& m = g.options().model;
    g.start(at::randn({1, m.text_len, m.text_dim}) * 0.1, 3);
    for (const auto& block : blocks_of(g, 2))
      EXPECT_TRUE(at::isfinite(block.to(at::kFloat)).all().item<bool>());
  }
}

// The low_memory preset's int8 KV reaches the generator; a float KV dtype keeps the compute dtype
// (on the CPU, float32 for everything).
TEST(KvCacheInt8, LowMemoryPresetSelectsInt8AndOthersTheComputeDtype) {
  Preset preset;
  preset.kv_dtype = KvDType::int8;
  RuntimeChoice r = choose_runtime(preset, at::kCPU);
  ASSERT_TRUE(r.kv_dtype.has_value());
  EXPECT_EQ(*r.kv_dtype, at::kChar);
  preset.kv_dtype = KvDType::bf16;
  r = choose_runtime(preset, at::kCPU);
  EXPECT_FALSE(r.kv_dtype.has_value());
}

// The studio's Performance goes through the same factory: its preset change continues the video.
TEST(SessionFactory, PerformancePresetChangeContinuesTheTimeline) {
  Performance perf(tiny(), base_preset(), 32, 32);
  perf.start(PromptMix::single("a red fox"), 3);
  perf.next_block();
  perf.next_block();
  const TextEncoder* text = perf.session()->text.get();
  perf.set_preset(lighter_preset());
  EXPECT_TRUE(perf.active());
  EXPECT_EQ(perf.session()->text.get(), text);
  EXPECT_EQ(perf.session()->generator->frames_generated(), 2 * 3);
  perf.next_block();
  EXPECT_EQ(perf.blocks(), 3);
  ASSERT_EQ(perf.timeline().events.size(), 2u);
  EXPECT_EQ(perf.timeline().events[1].kind, EventKind::preset);
  EXPECT_EQ(perf.timeline().events[1].block, 2);
}

// The studio (Engine -> Performance), `generate` (a factory session with the text encoder) and
// `bench` (a factory session without it) get the same generator for a preset: the same options,
// and the same latents for the same prompt and seed.
TEST(SessionFactory, StudioGenerateAndBenchRunTheSameSession) {
  const Preset preset = base_preset();
  std::mutex m;
  std::vector<at::Tensor> studio;
  Engine::Callbacks cb;
  cb.on_latents = [&](int64_t, const at::Tensor& latents) {
    std::lock_guard lock(m);
    if (studio.size() < 3) studio.push_back(latents.to(at::kCPU).clone());
  };
  {
    Engine engine(tiny(), preset, cb, 32, 32);
    engine.start("a red fox", 9);
    for (int i = 0; i < 60000 / 10; ++i) {
      {
        std::lock_guard lock(m);
        if (studio.size() >= 3) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    engine.stop();
  }
  ASSERT_EQ(studio.size(), 3u);

  SessionFactory generate_factory(tiny(), {.live_decoder = false});
  auto generate = generate_factory.open(preset, 32, 32);
  generate->generator->start(generate->embed(PromptMix::single("a red fox")), 9);
  for (size_t i = 0; i < studio.size(); ++i)
    EXPECT_TRUE(at::equal(generate->generator->next_block(), studio[i])) << "block " << i;

  SessionFactory bench_factory(tiny(), {.text_encoder = false, .live_decoder = false});
  auto bench = bench_factory.open(preset, 32, 32);
  const GeneratorOptions& a = bench->generator->options();
  const GeneratorOptions& b = generate->generator->options();
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.kv_dtype, b.kv_dtype);
  EXPECT_EQ(a.denoising_steps, b.denoising_steps);
  EXPECT_EQ(a.local_attn_frames, b.local_attn_frames);
  EXPECT_EQ(a.runtime.fused_kernels, b.runtime.fused_kernels);
  EXPECT_EQ(a.runtime.cuda_graphs, b.runtime.cuda_graphs);
  EXPECT_EQ(a.reserve_up_front, b.reserve_up_front);
  EXPECT_FALSE(bench->text);
}

}  // namespace
}  // namespace longlive::test
