// OSC control: every address parsed and validated, and real UDP messages (a liblo client) driving
// a running tiny-model Engine on the CPU: a prompt switch and a LoRA fader reach the timeline, a
// bad message is logged with its sender and ignored.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>

#include "fixtures.h"
#include "longlive/control.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/timeline.h"
#include "longlive/vace.h"

#ifdef LONGLIVE_WITH_OSC
#include <lo/lo.h>

#include "engine_support.h"
#include "longlive/osc_server.h"
#endif

namespace longlive::test {
namespace {

using K = ControlCommand::Kind;

OscMessage msg(std::string path, std::vector<OscArg> args = {}) {
  return {std::move(path), std::move(args), "127.0.0.1:5555", {}};
}

std::string error_of(const OscMessage& m) {
  try {
    parse_osc(m);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(OscParse, EveryAddress) {
  ControlCommand c = parse_osc(msg("/longlive/start", {std::string("a fox"), int64_t{42}}));
  EXPECT_EQ(c.kind, K::start);
  EXPECT_EQ(c.mix, PromptMix::single("a fox"));
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(parse_osc(msg("/longlive/start", {std::string("a fox")})).seed, 0u);

  c = parse_osc(msg("/longlive/prompt", {std::string("a whale")}));
  EXPECT_EQ(c.kind, K::cut);
  EXPECT_EQ(c.mix, PromptMix::single("a whale"));

  c = parse_osc(msg("/longlive/transition", {std::string("a whale"), 6.0, std::string("linear")}));
  EXPECT_EQ(c.kind, K::transition);
  EXPECT_EQ(c.transition.blocks, 6);
  EXPECT_EQ(c.transition.interpolation, Interpolation::linear);
  c = parse_osc(msg("/longlive/transition", {std::string("a whale"), int64_t{3}}));
  EXPECT_EQ(c.transition.interpolation, Interpolation::slerp);  // the default curve

  c = parse_osc(msg("/longlive/blend", {std::string("a"), 1.0, std::string("b"), int64_t{3}}));
  EXPECT_EQ(c.kind, K::cut);
  const PromptMix ab{{{"a", 1.0}, {"b", 3.0}}, Interpolation::linear};
  EXPECT_EQ(c.mix, ab);
  c = parse_osc(msg("/longlive/blend/transition", {int64_t{4}, std::string("linear"),
                                                   std::string("a"), 1.0, std::string("b"), 3.0}));
  EXPECT_EQ(c.kind, K::transition);
  EXPECT_EQ(c.transition.blocks, 4);
  EXPECT_EQ(c.mix, ab);

  c = parse_osc(msg("/longlive/lora/glow", {0.75}));
  EXPECT_EQ(c.kind, K::lora_strength);
  EXPECT_EQ(c.name, "glow");
  EXPECT_EQ(c.value, 0.75);
  c = parse_osc(msg("/longlive/lora", {std::string("ink"), int64_t{1}}));
  EXPECT_EQ(c.name, "ink");
  EXPECT_EQ(c.value, 1.0);
  c = parse_osc(
      msg("/longlive/lora/load", {std::string("/m/ink.safetensors"), std::string("ink")}));
  EXPECT_EQ(c.kind, K::lora_load);
  EXPECT_EQ(c.file, "/m/ink.safetensors");
  EXPECT_EQ(c.name, "ink");
  EXPECT_EQ(parse_osc(msg("/longlive/lora/bake")).kind, K::lora_bake);
  EXPECT_EQ(parse_osc(msg("/longlive/lora/unload")).kind, K::lora_unload);
  // A LoRA named "bake" is still reachable through /longlive/lora (name, strength).
  c = parse_osc(msg("/longlive/lora", {std::string("bake"), 0.5}));
  EXPECT_EQ(c.kind, K::lora_strength);
  EXPECT_EQ(c.name, "bake");

  EXPECT_EQ(parse_osc(msg("/longlive/preset", {std::string("turbo")})).name, "turbo");
  EXPECT_EQ(parse_osc(msg("/longlive/pause")).kind, K::pause);
  EXPECT_EQ(parse_osc(msg("/longlive/resume")).kind, K::resume);
  EXPECT_EQ(parse_osc(msg("/longlive/stop")).kind, K::stop);
  EXPECT_TRUE(parse_osc(msg("/longlive/record", {int64_t{1}})).on);
  EXPECT_FALSE(parse_osc(msg("/longlive/record", {0.0})).on);
  EXPECT_EQ(parse_osc(msg("/longlive/vace/scale", {1.5})).kind, K::vace_scale);
  EXPECT_EQ(parse_osc(msg("/longlive/v2v/strength", {0.5})).value, 0.5);

  c = parse_osc(msg("/longlive/out/stream", {std::string("srt://127.0.0.1:9000")}));
  EXPECT_EQ(c.kind, K::stream_out);
  EXPECT_TRUE(c.on);
  EXPECT_EQ(c.file, "srt://127.0.0.1:9000");
  c = parse_osc(msg("/longlive/out/stream", {int64_t{0}}));
  EXPECT_FALSE(c.on);
  EXPECT_TRUE(c.file.empty());
  c = parse_osc(msg("/longlive/out/camera", {int64_t{1}}));
  EXPECT_EQ(c.kind, K::camera_out);
  EXPECT_TRUE(c.on);
  EXPECT_TRUE(c.file.empty());  // the front end's device
  EXPECT_EQ(parse_osc(msg("/longlive/out/camera", {std::string("/dev/video11")})).file,
            "/dev/video11");
}

// The tiny random model on the CPU, and a preset with a short window, for live engines.
Preset live_preset() {
  Preset preset;
  preset.name = "live";
  preset.local_attn_frames = 9;
  return preset;
}

// Record and video-out commands reach the front end's controls, and only there.
TEST(EngineControl, FrontEndCommandsGoToTheFrontEnd) {
  Engine engine(tiny_model(), Preset{}, {}, 32, 32);  // never started: these commands need no video
  std::vector<std::string> seen;
  FrontEndControls front_end;
  front_end.record = [&](bool on) { seen.push_back(on ? "record on" : "record off"); };
  front_end.video_out = [&](const ControlCommand& c) { seen.push_back(describe(c)); };
  EngineControl control(engine, {}, front_end);
  control.apply(parse_osc(msg("/longlive/record", {int64_t{1}})));
  control.apply(parse_osc(msg("/longlive/out/stream", {std::string("udp://127.0.0.1:1234")})));
  control.apply(parse_osc(msg("/longlive/out/camera", {int64_t{0}})));
  EXPECT_EQ(seen, (std::vector<std::string>{"record on", "stream_out on udp://127.0.0.1:1234",
                                            "camera_out off"}));
  EngineControl bare(engine, {});  // no front-end controls: logged and dropped, no throw
  EXPECT_NO_THROW(bare.apply(parse_osc(msg("/longlive/out/stream", {int64_t{1}}))));
}

TEST(OscParse, BadMessagesSayWhy) {
  const std::pair<OscMessage, std::string> cases[] = {
      {msg("/longlive/lora/glow", {1.6}), "/longlive/lora/glow: strength 1.6 is outside 0..1.5"},
      {msg("/longlive/lora/glow", {-0.1}), "strength -0.1 is outside"},
      {msg("/longlive/lora/glow", {std::string("high")}), "argument 1 (strength) must be a number"},
      {msg("/longlive/lora/glow"), "0 arguments, expected (strength)"},
      {msg("/longlive/prompt", {int64_t{3}}), "argument 1 (prompt) must be a string"},
      {msg("/longlive/prompt", {std::string("  ")}), "empty"},
      {msg("/longlive/transition", {std::string("a"), 2.5}), "blocks 2.5 must be a whole number"},
      {msg("/longlive/transition", {std::string("a"), int64_t{999}}),
       "blocks 999 is outside 0..256"},
      {msg("/longlive/transition", {std::string("a"), int64_t{2}, std::string("cubic")}), "cubic"},
      {msg("/longlive/blend", {std::string("a"), 1.0, std::string("b")}), "(prompt, weight) pairs"},
      {msg("/longlive/blend", {std::string("a"), -1.0}), "weight -1 is outside"},
      {msg("/longlive/start", {std::string("a"), int64_t{-4}}), "seed -4 is outside"},
      {msg("/longlive/stop", {int64_t{1}}), "1 arguments, expected none"},
      {msg("/longlive/record", {int64_t{2}}), "record 2 is outside 0..1"},
      {msg("/longlive/vace/scale", {2.5}), "scale 2.5 is outside 0..2"},
      {msg("/longlive/out/stream", {int64_t{2}}), "on 2 is outside 0..1"},
      {msg("/longlive/out/stream", {std::string("")}), "/longlive/out/stream: empty url"},
      {msg("/longlive/out/camera"), "0 arguments, expected (1 | 0 | device)"},
      {msg("/longlive/dance"), "/longlive/dance: unknown address"},
      {msg("/longlive/lora/bake", {1.0}), "/longlive/lora/bake: 1 arguments, expected none"},
      {msg("/longlive/lora/unload", {std::string("glow")}),
       "/longlive/lora/unload: 1 arguments, expected none"},
      {msg("/other/start"), "not a LongLive address"},
  };
  for (const auto& [m, expected] : cases)
    EXPECT_NE(error_of(m).find(expected), std::string::npos)
        << m.path << ": got '" << error_of(m) << "', expected '" << expected << "'";
}

#ifdef LONGLIVE_WITH_OSC

// What a running Engine reports, for the tests that drive one over OSC: blocks made, errors,
// the timeline of the stopped video.
struct EngineEvents {
  std::mutex m;
  int64_t blocks = 0;
  std::optional<Timeline> recorded;
  std::vector<std::string> errors;

  Engine::Callbacks callbacks() {
    Engine::Callbacks cb;
    cb.on_latents = [this](int64_t, const at::Tensor&) {
      std::lock_guard lock(m);
      ++blocks;
    };
    cb.on_timeline = [this](const Timeline& t) {
      std::lock_guard lock(m);
      recorded = t;
    };
    cb.on_error = [this](const std::string& e) {
      std::lock_guard lock(m);
      errors.push_back(e);
    };
    return cb;
  }
  int64_t blocks_now() {
    std::lock_guard lock(m);
    return blocks;
  }
  bool has_timeline() {
    std::lock_guard lock(m);
    return recorded.has_value();
  }
  // Waits until the engine has made `n` more blocks; false when it did not in time.
  bool run_blocks(int64_t n) {
    const int64_t target = blocks_now() + n;
    return wait_for([&] { return blocks_now() >= target; });
  }
};

TEST(OscServer, UdpMessagesDriveARunningEngine) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  EngineEvents events;
  std::vector<std::string> warnings;
  log::set_callback([&](log::Level level, std::string_view text) {
    if (level != log::Level::warn) return;
    std::lock_guard lock(events.m);
    warnings.emplace_back(text);
  });
  const Preset preset = live_preset();
  Engine engine(tiny_model(), preset, events.callbacks(), 32, 32);
  EngineControl control(engine, [&](const std::string& name) {
    if (name != "live") throw ConfigError("no preset '" + name + "'");
    return preset;
  });
  OscServer server(0, [&](const ControlCommand& c) { control.apply(c); });
  ASSERT_GT(server.port(), 0);

  lo_address to = lo_address_new("127.0.0.1", std::to_string(server.port()).c_str());
  const std::string lora = fixture("dit_lora.safetensors").string();
  ASSERT_GE(lo_send(to, "/longlive/lora/load", "ss", lora.c_str(), "glow"), 0);
  ASSERT_GE(lo_send(to, "/longlive/start", "si", "a red fox", 7), 0);
  ASSERT_TRUE(events.run_blocks(2));
  ASSERT_GE(lo_send(to, "/longlive/lora/glow", "f", 0.9f), 0);
  ASSERT_GE(lo_send(to, "/longlive/lora/glow", "f", 7.0f), 0);  // out of range: ignored
  ASSERT_GE(lo_send(to, "/longlive/prompt", "s", "a blue whale"), 0);
  ASSERT_TRUE(events.run_blocks(2));
  ASSERT_GE(lo_send(to, "/longlive/stop", ""), 0);
  ASSERT_TRUE(wait_for([&] { return events.has_timeline(); }));
  lo_address_free(to);
  log::set_callback(nullptr);

  const OscServer::Stats stats = server.stats();
  EXPECT_EQ(stats.rejected, 1);
  EXPECT_EQ(stats.accepted, 5);  // load, start, fader, prompt, stop
  EXPECT_NE(stats.last_rejection.find("from 127.0.0.1:"), std::string::npos)
      << stats.last_rejection;
  EXPECT_NE(stats.last_rejection.find("strength 7 is outside 0..1.5"), std::string::npos)
      << stats.last_rejection;
  std::lock_guard lock(events.m);
  EXPECT_TRUE(events.errors.empty()) << events.errors.front();
  ASSERT_TRUE(std::any_of(warnings.begin(), warnings.end(), [](const std::string& w) {
    return w.find("OSC: ignored a message from 127.0.0.1:") != std::string::npos &&
           w.find("/longlive/lora/glow") != std::string::npos;
  }));
  const Timeline& t = *events.recorded;
  auto has = [&](EventKind kind, const std::function<bool(const TimelineEvent&)>& what) {
    return std::any_of(t.events.begin(), t.events.end(),
                       [&](const TimelineEvent& e) { return e.kind == kind && what(e); });
  };
  EXPECT_TRUE(has(EventKind::start, [](const TimelineEvent& e) {
    return e.mix == PromptMix::single("a red fox") && e.seed == 7;
  }));
  EXPECT_TRUE(has(EventKind::cut, [](const TimelineEvent& e) {
    return e.mix == PromptMix::single("a blue whale") && e.block >= 2;
  }));
  EXPECT_TRUE(has(EventKind::lora, [](const TimelineEvent& e) {
    return e.lora == "glow" && e.strength == static_cast<double>(0.9f) && e.block >= 2;
  }));
  EXPECT_FALSE(has(EventKind::lora, [](const TimelineEvent& e) { return e.strength > 1.5; }));
}

// /longlive/lora/bake over UDP: with no fader up the engine says so and records nothing; with
// one up the bake reaches the engine (the fader drops to 0, baked at its strength) and the
// timeline. Then /longlive/lora/unload with the fader up again: the engine holds no LoRA, the
// timeline has the unload; a second unload (nothing loaded) is reported and not recorded.
TEST(OscServer, BakeAndUnloadMessagesReachTheEngineAndTheTimeline) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  EngineEvents events;
  const Preset preset = live_preset();
  Engine engine(tiny_model(), preset, events.callbacks(), 32, 32);
  EngineControl control(engine, [&](const std::string&) { return preset; });
  OscServer server(0, [&](const ControlCommand& c) { control.apply(c); });
  ASSERT_GT(server.port(), 0);
  lo_address to = lo_address_new("127.0.0.1", std::to_string(server.port()).c_str());
  const std::string lora = fixture("dit_lora.safetensors").string();
  ASSERT_GE(lo_send(to, "/longlive/lora/load", "ss", lora.c_str(), "glow"), 0);
  ASSERT_GE(lo_send(to, "/longlive/start", "si", "a red fox", 7), 0);
  ASSERT_TRUE(events.run_blocks(1));
  ASSERT_GE(lo_send(to, "/longlive/lora/bake", ""), 0);  // every fader at 0: a no-op
  ASSERT_GE(lo_send(to, "/longlive/lora/glow", "f", 0.75f), 0);
  ASSERT_TRUE(events.run_blocks(1));
  ASSERT_GE(lo_send(to, "/longlive/lora/bake", ""), 0);
  ASSERT_TRUE(events.run_blocks(2));
  const EngineStats stats = engine.stats();
  // UDP and the engine's queue are asynchronous: wait for what each message does.
  ASSERT_GE(lo_send(to, "/longlive/lora/glow", "f", 0.5f), 0);
  EXPECT_TRUE(wait_for([&] {
    const EngineStats s = engine.stats();
    return !s.loras.empty() && s.loras[0].strength > 0;
  }));
  const EngineStats up_again = engine.stats();
  ASSERT_TRUE(events.run_blocks(1));
  ASSERT_GE(lo_send(to, "/longlive/lora/unload", ""), 0);
  EXPECT_TRUE(wait_for([&] { return engine.stats().loras.empty(); }));
  const EngineStats unloaded = engine.stats();
  ASSERT_TRUE(events.run_blocks(1));
  ASSERT_GE(lo_send(to, "/longlive/lora/unload", ""), 0);  // nothing loaded: a no-op
  EXPECT_TRUE(wait_for([&] {
    std::lock_guard lock(events.m);
    return events.errors.size() >= 2;
  }));
  ASSERT_GE(lo_send(to, "/longlive/stop", ""), 0);
  ASSERT_TRUE(wait_for([&] { return events.has_timeline(); }));
  lo_address_free(to);

  EXPECT_EQ(server.stats().accepted, 9);
  ASSERT_EQ(stats.loras.size(), 1u);
  EXPECT_EQ(stats.loras[0].strength, 0.0);
  EXPECT_EQ(stats.loras[0].baked, static_cast<double>(0.75f));
  EXPECT_GT(stats.lora_bake_matrices, 0);
  ASSERT_EQ(up_again.loras.size(), 1u);
  EXPECT_EQ(up_again.loras[0].strength, static_cast<double>(0.5f));
  EXPECT_TRUE(unloaded.loras.empty());
  std::lock_guard lock(events.m);
  ASSERT_EQ(events.errors.size(), 2u);
  EXPECT_NE(events.errors[0].find("bake: every style-LoRA fader is at 0, nothing to bake"),
            std::string::npos)
      << events.errors[0];
  EXPECT_NE(events.errors[1].find("unload: no style LoRA is loaded, nothing to unload"),
            std::string::npos)
      << events.errors[1];
  const Timeline& t = *events.recorded;
  const auto bakes = std::count_if(t.events.begin(), t.events.end(), [](const TimelineEvent& e) {
    return e.kind == EventKind::lora_bake;
  });
  EXPECT_EQ(bakes, 1);
  const auto unloads = std::count_if(t.events.begin(), t.events.end(), [](const TimelineEvent& e) {
    return e.kind == EventKind::lora_unload;
  });
  EXPECT_EQ(unloads, 1);
  const auto move = std::find_if(t.events.begin(), t.events.end(), [](const TimelineEvent& e) {
    return e.kind == EventKind::lora && e.strength > 0;
  });
  const auto bake = std::find_if(t.events.begin(), t.events.end(), [](const TimelineEvent& e) {
    return e.kind == EventKind::lora_bake;
  });
  ASSERT_NE(bake, t.events.end());
  EXPECT_LT(move, bake);  // baked after the fader went up
  EXPECT_GE(bake->block, move->block);
  const auto unload = std::find_if(t.events.begin(), t.events.end(), [](const TimelineEvent& e) {
    return e.kind == EventKind::lora_unload;
  });
  ASSERT_NE(unload, t.events.end());
  EXPECT_LT(bake, unload);
  EXPECT_GT(unload->block, bake->block);
}

TEST(OscServer, VaceScaleAndV2vStrengthReachTheEngine) {
  // Inputs from a camera capture file (no FFmpeg needed): 40 random frames at the session size.
  const int side = 32;
  const auto frames_file = temp_dir("osc_inputs") / "frames.rgb8";
  {
    FrameCaptureWriter w(frames_file, side, side);
    w.append(at::rand({40, 3, side, side}).mul(2).sub(1));
  }
  EngineEvents events;
  Engine engine(tiny_model(), live_preset(), events.callbacks(), side, side);
  InputSource source{InputKind::frames, frames_file.string(), "", 0, ""};
  engine.set_vace({source, "conditioning", 1.0, "", ""});
  engine.set_v2v({source, 0.7});
  EngineControl control(engine, {});
  OscServer server(0, [&](const ControlCommand& c) { control.apply(c); });
  lo_address to = lo_address_new("127.0.0.1", std::to_string(server.port()).c_str());
  engine.start("a red fox", 3);
  ASSERT_TRUE(wait_for([&] { return events.blocks_now() >= 1; }));
  ASSERT_GE(lo_send(to, "/longlive/vace/scale", "f", 0.25f), 0);
  ASSERT_GE(lo_send(to, "/longlive/v2v/strength", "f", 0.5f), 0);
  ASSERT_GE(lo_send(to, "/longlive/vace/scale", "f", 2.5f), 0);  // out of range: ignored
  ASSERT_TRUE(wait_for([&] {
    const EngineStats s = engine.stats();
    return s.inputs.vace_scale == 0.25 && s.inputs.v2v_strength == 0.5;
  })) << engine.stats().inputs.vace_scale;
  engine.stop();
  ASSERT_TRUE(wait_for([&] { return events.has_timeline(); }));
  lo_address_free(to);
  EXPECT_EQ(server.stats().rejected, 1);
  std::lock_guard lock(events.m);
  EXPECT_TRUE(events.errors.empty()) << events.errors.front();
  int scales = 0, strengths = 0;
  for (const auto& e : events.recorded->events) {
    if (e.kind == EventKind::vace_scale && e.strength == 0.25 && e.block >= 1) ++scales;
    if (e.kind == EventKind::v2v_strength && e.strength == 0.5 && e.block >= 1) ++strengths;
  }
  EXPECT_EQ(scales, 1);
  EXPECT_EQ(strengths, 1);
}

TEST(OscServer, PortInUseIsNamed) {
  OscServer first(0, {});
  try {
    OscServer second(first.port(), {});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("UDP port " + std::to_string(first.port())),
              std::string::npos)
        << e.what();
  }
}

#endif

}  // namespace
}  // namespace longlive::test
