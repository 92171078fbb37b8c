// The Engine facade on the tiny random model: frames arrive, a switch reaches the generator,
// errors come back through the callback.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "fixtures.h"
#include "longlive/decoder.h"
#include "longlive/engine.h"
#include "longlive/performance.h"
#include "longlive/safetensors_writer.h"
#include "longlive/wan_vae.h"

namespace longlive::test {
namespace {

bool wait_for(const std::function<bool()>& done, int ms = 60000) {
  for (int i = 0; i < ms / 10 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

TEST(Engine, TinyModelStreamsFramesAndSwitchesPrompts) {
  std::mutex m;
  std::vector<EngineFrame> frames;
  std::atomic<int> errors{0};
  Engine::Callbacks cb;
  cb.on_frame = [&](EngineFrame f) {
    std::lock_guard lock(m);
    frames.push_back(std::move(f));
  };
  cb.on_error = [&](const std::string&) { ++errors; };
  Preset preset;
  preset.name = "test";
  preset.local_attn_frames = 9;
  Engine engine({.tiny_random = true}, preset, cb, 64, 64);
  engine.start("a red fox", 7);
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard l(m);
    return frames.size() >= 21;
  }));
  engine.switch_prompt("a blue whale");
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard l(m);
    return !frames.empty() && frames.back().prompt == "a blue whale";
  }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] { return engine.stats().state == "idle"; }));
  std::lock_guard l(m);
  EXPECT_EQ(frames[0].rgba.sizes(), (std::vector<int64_t>{64, 64, 4}));
  for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i].index, static_cast<int64_t>(i));
  EXPECT_TRUE(
      std::any_of(frames.begin(), frames.end(), [](const auto& f) { return f.first_of_prompt; }));
  EXPECT_GT(engine.stats().last_switch_ms, 0);
  EXPECT_EQ(errors.load(), 0);
  // The session's latents are kept for export: 3 latent frames per block, 4 video frames each
  // (the first block 1 + 4 * 2).
  const at::Tensor latents = engine.session_latents();
  ASSERT_TRUE(latents.defined());
  EXPECT_EQ(latents.dim(), 5);
  EXPECT_EQ(latents.size(2), 16);
  EXPECT_EQ(latents.size(3), 8);
  EXPECT_TRUE(latents.device().is_cpu());
  EXPECT_EQ(latents.size(1) * 4 - 3, engine.stats().frames);
}

TEST(Engine, BadModelFolderIsReportedNotThrown) {
  std::atomic<int> errors{0};
  std::string message;
  std::mutex m;
  Engine::Callbacks cb;
  cb.on_error = [&](const std::string& e) {
    std::lock_guard l(m);
    message = e;
    ++errors;
  };
  const auto dir = temp_dir("model");
  Engine engine({.tiny_random = false, .folder = dir}, Preset{}, cb);
  engine.start("anything", 1);
  ASSERT_TRUE(wait_for([&] { return errors.load() > 0; }));
  std::lock_guard l(m);
  EXPECT_NE(message.find("models_t5_umt5-xxl-enc-bf16.pth"), std::string::npos) << message;
  EXPECT_EQ(missing_model_files(dir).size(), 4u);
}

// Live decoder by preset: `decoder: wan` uses the folder's Wan VAE, and falls back to TAEHV
// (which every model folder has) when the VAE is missing.
TEST(LiveDecoder, PresetPicksTheWanVaeWhenTheFolderHasIt) {
  const auto dir = temp_dir("live_decoder");
  std::map<std::string, at::Tensor> taehv;
  const WeightStore taehv_weights = make_random_taehv_weights(3);
  for (const auto& name : taehv_weights.names()) taehv[name] = taehv_weights.get(name);
  save_safetensors(dir / "taew2_1.safetensors", taehv);
  Preset wan;
  wan.decoder = DecoderKind::wan;
  auto is_wan = [](const std::unique_ptr<StreamingDecoder>& d) {
    return dynamic_cast<const WanVaeDecoder*>(d.get()) != nullptr;
  };
  EXPECT_FALSE(is_wan(open_live_decoder(dir, wan, at::kCPU))) << "no VAE: TAEHV";

  std::map<std::string, at::Tensor> vae;
  const WeightStore vae_weights = make_random_wan_vae_weights(WanVaeConfig::tiny(), 5, false);
  for (const auto& name : vae_weights.names()) vae[name] = vae_weights.get(name);
  save_safetensors(dir / "Wan2.1_VAE.safetensors", vae);
  const auto decoder = open_live_decoder(dir, wan, at::kCPU);
  ASSERT_TRUE(is_wan(decoder));
  // It decodes a block like the live loop asks: [1, T, z, h, w] -> frames.
  const at::Tensor frames = decoder->decode(at::randn({1, 3, WanVaeConfig::tiny().z_dim, 4, 4}));
  EXPECT_EQ(frames.size(0), decoder->frames_for(3, true));

  Preset taehv_preset;
  taehv_preset.decoder = DecoderKind::taehv;
  EXPECT_FALSE(is_wan(open_live_decoder(dir, taehv_preset, at::kCPU)));
}

}  // namespace
}  // namespace longlive::test
