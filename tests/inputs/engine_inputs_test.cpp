// VACE and video-to-video inputs of the studio's live Engine on the tiny model (CPU): the Engine
// with a control video produces the latents `generate --vace-video` produces (its loop:
// VaceConditioner before each block), a live scale change applies at the next block, the
// recorded timeline (file + offsets, or a camera's saved frames) replays bit for bit, and bad
// inputs are reported while the video goes on.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "engine_support.h"
#include "fixtures.h"
#include "input_videos.h"
#include "longlive/control_input.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/performance.h"
#include "longlive/session.h"
#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive::test {
namespace {

constexpr int kSide = 32;  // session size of these tests
const char* const kPrompt = "a red fox";
constexpr uint64_t kSeed = 11;

ModelSpec tiny(bool vace = true) {
  ModelSpec m = tiny_model(at::Device(at::kCPU));
  m.vace = vace;
  return m;
}

Preset preset() {
  Preset p;
  p.name = "vace-live";
  p.local_attn_frames = 9;
  return p;
}

// A live Engine session: its latents per block, errors, the finished timeline.
struct LiveRun {
  std::mutex m;
  std::vector<at::Tensor> latents;
  std::vector<std::string> errors;
  std::optional<Timeline> timeline;
  std::function<void(int64_t)> after_block;  // on the worker thread, after block k's latents

  Engine::Callbacks callbacks() {
    Engine::Callbacks cb;
    cb.on_latents = [this](int64_t block, const at::Tensor& l) {
      {
        std::lock_guard lock(m);
        latents.push_back(l.to(at::kCPU).clone());
      }
      if (after_block) after_block(block);
    };
    cb.on_error = [this](const std::string& e) {
      std::lock_guard lock(m);
      errors.push_back(e);
    };
    cb.on_timeline = [this](const Timeline& t) {
      std::lock_guard lock(m);
      timeline = t;
    };
    return cb;
  }
  size_t blocks() {
    std::lock_guard lock(m);
    return latents.size();
  }
  size_t error_count() {
    std::lock_guard lock(m);
    return errors.size();
  }
  // Waits for `n` blocks, stops the engine and waits for its timeline.
  void finish(Engine& engine, size_t n) {
    ASSERT_TRUE(wait_for([&] { return blocks() >= n; })) << "blocks: " << blocks();
    engine.stop();
    ASSERT_TRUE(wait_for([&] {
      std::lock_guard lock(m);
      return timeline.has_value();
    }));
  }
};

EngineOptions options() {
  EngineOptions o;
  o.inputs = ffmpeg_input_opener();
  o.capture_dir = temp_dir("engine_inputs") / "captures";
  return o;
}

// What `longlive generate --random tiny --prompt ... --vace-video FILE --vace-scale S` does
// (app/cli/cmd_generate.cpp): a VaceConditioner over a VideoFileSource before every block.
// `scale_at` moves the scale before that block (-1: never).
std::vector<at::Tensor> generate_reference(const std::filesystem::path& video, int64_t blocks,
                                           int64_t scale_at = -1, double new_scale = 1.0) {
  SessionFactory factory(tiny());
  auto session = factory.open(preset(), kSide, kSide);
  StreamGenerator& g = *session->generator;
  VaceSettings settings;
  settings.scale = 1.0;
  VaceConditioner vace(factory.vace_encoder(), settings,
                       std::make_shared<VideoFileSource>(video, session->height, session->width));
  g.start(session->embed(PromptMix::single(kPrompt)), kSeed);
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < blocks; ++b) {
    if (b == scale_at) vace.set_scale(new_scale);
    vace.before_block(g);
    out.push_back(g.next_block().to(at::kCPU).clone());
  }
  return out;
}

float max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<float>();
}

VaceRequest video_request(const std::filesystem::path& video) {
  VaceRequest r;
  r.source.kind = InputKind::video;
  r.source.path = video.string();
  return r;
}

// No camera here: FFmpeg's lavfi test pattern stands in for one.
InputSource test_pattern_camera() {
  InputSource s;
  s.kind = InputKind::camera;
  s.format = "lavfi";
  s.path = "testsrc2=size=64x48:rate=30";
  return s;
}

// The events of one kind in a timeline.
std::vector<TimelineEvent> events_of(const Timeline& t, EventKind kind) {
  std::vector<TimelineEvent> out;
  for (const auto& e : t.events)
    if (e.kind == kind) out.push_back(e);
  return out;
}

// Replays a timeline (saved and loaded as JSON first) and returns its latents per block; its
// presets by name from `presets` (by default every name is preset()).
std::vector<at::Tensor> replay_latents(
    const Timeline& live,
    const PresetLookup& presets = [](const std::string&) { return preset(); }) {
  const Timeline t = parse_timeline(to_json(live).dump(), "live.json");
  std::vector<at::Tensor> out;
  replay(
      t, tiny(), presets,
      [&](const ReplayBlock& b) { out.push_back(b.latents.to(at::kCPU).clone()); }, "live.json",
      ffmpeg_input_opener());
  return out;
}

// A live session's timeline replays to the same latents, bit for bit.
void expect_replays_bit_for_bit(
    const Timeline& live, const std::vector<at::Tensor>& latents,
    const PresetLookup& presets = [](const std::string&) { return preset(); }) {
  const auto replayed = replay_latents(live, presets);
  ASSERT_EQ(replayed.size(), latents.size());
  for (size_t b = 0; b < replayed.size(); ++b)
    EXPECT_EQ(max_diff(replayed[b], latents[b]), 0.0f) << "block " << b;
}

TEST(EngineVace, ControlVideoMatchesGenerateAndScaleMovesAtTheNextBlock) {
  // 10 frames: four blocks take 9 + 12 + 12 + 12, so the file loops.
  const auto video = write_video("engine_control.mp4", moving_bar(10, kSide, kSide), 16);
  constexpr int64_t kBlocks = 4, kScaleAt = 2;
  LiveRun run;
  Engine* engine_ptr = nullptr;
  // Posted while block 1 finishes: the worker takes it before block 2.
  run.after_block = [&](int64_t block) {
    if (block == kScaleAt - 1) engine_ptr->set_vace_scale(0.5);
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, options());
  engine_ptr = &engine;
  engine.set_vace(video_request(video));
  engine.start(kPrompt, kSeed);
  run.finish(engine, kBlocks);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();

  const auto expected = generate_reference(video, kBlocks, kScaleAt, 0.5);
  const auto unchanged = generate_reference(video, kBlocks);
  for (int64_t b = 0; b < kBlocks; ++b)
    EXPECT_EQ(max_diff(run.latents[b], expected[b]), 0.0f) << "block " << b;
  EXPECT_GT(max_diff(run.latents[kScaleAt], unchanged[kScaleAt]), 1e-4f)
      << "the scale change did nothing";
  EXPECT_EQ(max_diff(run.latents[kScaleAt - 1], unchanged[kScaleAt - 1]), 0.0f);

  const Timeline& t = *run.timeline;
  const auto sets = events_of(t, EventKind::vace);
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].block, 0);
  EXPECT_EQ(sets[0].vace.source.kind, InputKind::video);
  EXPECT_EQ(sets[0].vace.source.offset, 0);
  const auto scales = events_of(t, EventKind::vace_scale);
  ASSERT_EQ(scales.size(), 1u);
  EXPECT_EQ(scales[0].block, kScaleAt);
  EXPECT_EQ(scales[0].strength, 0.5);

  // Part 2: `render` (replay) of the session gives its latents back, bit for bit.
  const auto replayed = replay_latents(t);
  ASSERT_EQ(replayed.size(), run.latents.size());
  for (size_t b = 0; b < replayed.size(); ++b)
    EXPECT_EQ(max_diff(replayed[b], run.latents[b]), 0.0f) << "block " << b;
}

TEST(EngineVace, RestartStatesTheFileOffsetAndReplays) {
  // VACE set mid-video, then a new video (stop + start): the second timeline states the input
  // from the frame it has reached.
  const auto video = write_video("engine_offset.mp4", moving_bar(10, kSide, kSide), 16);
  LiveRun run;
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, options());
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 1; }));
  engine.set_vace(video_request(video));
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 3; }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(run.m);
    return run.timeline.has_value();
  }));
  const Timeline first = *run.timeline;
  const auto first_sets = events_of(first, EventKind::vace);
  ASSERT_EQ(first_sets.size(), 1u);
  EXPECT_GE(first_sets[0].block, 1);
  {
    std::lock_guard lock(run.m);
    run.timeline.reset();
    run.latents.clear();
  }
  engine.start("a blue whale", 5);
  run.finish(engine, 2);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  const Timeline second = *run.timeline;
  const auto sets = events_of(second, EventKind::vace);
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].block, 0);
  // 9 frames for its first block, 12 for each later one, all before the stop.
  const int64_t conditioned = first.blocks - first_sets[0].block;
  EXPECT_EQ(sets[0].vace.source.offset, 9 + 12 * (conditioned - 1));
  const auto replayed = replay_latents(second);
  ASSERT_EQ(replayed.size(), run.latents.size());
  for (size_t b = 0; b < replayed.size(); ++b)
    EXPECT_EQ(max_diff(replayed[b], run.latents[b]), 0.0f) << "block " << b;
}

TEST(EngineVace, CameraFramesAreSavedAndReplayExactly) {
  // No camera here: FFmpeg's lavfi test pattern stands in for one.
  LiveRun run;
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, options());
  VaceRequest r;
  r.source.kind = InputKind::camera;
  r.source.format = "lavfi";
  r.source.path = "testsrc2=size=64x48:rate=30";
  r.source.preprocess = "edges";
  engine.set_vace(r);
  engine.start(kPrompt, kSeed);
  run.finish(engine, 3);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  const Timeline& t = *run.timeline;
  const auto sets = events_of(t, EventKind::vace);
  ASSERT_EQ(sets.size(), 1u);
  const InputSource& saved = sets[0].vace.source;
  EXPECT_EQ(saved.kind, InputKind::frames);
  EXPECT_EQ(saved.preprocess, "edges");
  const CapturedFrameSource capture(saved.path, kSide, kSide);
  EXPECT_EQ(capture.frames(), 9 + 12 * (t.blocks - 1)) << saved.path;
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.inputs.frames_used, capture.frames());
  ASSERT_TRUE(stats.inputs.preview.defined());
  EXPECT_EQ(stats.inputs.preview.size(2), 3);

  const auto replayed = replay_latents(t);
  ASSERT_EQ(replayed.size(), run.latents.size());
  for (size_t b = 0; b < replayed.size(); ++b)
    EXPECT_EQ(max_diff(replayed[b], run.latents[b]), 0.0f) << "block " << b;
}

// A preset's input_encoder: taehv runs an input through TAEHV's encoder: from a video file,
// another video than the Wan VAE's (the only difference), the same readied at the open or not,
// and the session replays bit for bit with that preset; from a camera (its frames read as
// filmed, a group of 4 per pass), the replay of its saved frames too. A VACE input and a
// video-to-video one.
Preset taehv_preset() {
  Preset fast = preset();
  fast.name = "vace-live-taehv";
  fast.input_encoder = InputEncoderKind::taehv;
  return fast;
}

std::unique_ptr<LiveRun> live_run(const Preset& p, const std::function<void(Engine&)>& set_input,
                                  bool readied = false) {
  auto run = std::make_unique<LiveRun>();
  EngineOptions o = options();
  o.warm_inputs = readied;  // LiveInputs::warm: the preset's encoder readied at the open
  Engine engine(tiny(), p, run->callbacks(), kSide, kSide, o);
  set_input(engine);
  engine.start(kPrompt, kSeed);
  run->finish(engine, 3);
  EXPECT_EQ(run->error_count(), 0u) << run->errors.front();
  // The input panel says which encoder an input runs when it is not the reference's.
  const InputStatus status = engine.stats().inputs;
  const std::string inputs = status.vace + " | " + status.v2v;
  EXPECT_EQ(inputs.find("(TAEHV encoder)") != std::string::npos,
            p.input_encoder == InputEncoderKind::taehv)
      << inputs;
  return run;
}

void expect_replays_with_taehv(const LiveRun& run) {
  EXPECT_EQ(run.timeline->preset, taehv_preset().name);
  expect_replays_bit_for_bit(*run.timeline, run.latents, [](const std::string& name) {
    return name == taehv_preset().name ? taehv_preset() : preset();
  });
}

void expect_taehvs_encoder_conditions_and_replays(
    const std::function<void(Engine&, const InputSource&)>& set_input, const char* video_name) {
  const auto video = write_video(video_name, moving_bar(10, kSide, kSide), 16);
  InputSource file;
  file.kind = InputKind::video;
  file.path = video.string();
  const auto from_file = [&](Engine& e) { set_input(e, file); };
  const auto with_taehv = live_run(taehv_preset(), from_file);
  const auto with_wan = live_run(preset(), from_file);
  ASSERT_EQ(with_taehv->latents.size(), with_wan->latents.size());
  EXPECT_GT(max_diff(with_taehv->latents[0], with_wan->latents[0]), 1e-4f);
  const auto readied = live_run(taehv_preset(), from_file, /*readied=*/true);
  ASSERT_EQ(readied->latents.size(), with_taehv->latents.size());
  for (size_t b = 0; b < readied->latents.size(); ++b)
    EXPECT_EQ(max_diff(readied->latents[b], with_taehv->latents[b]), 0.0f)
        << "readied, block " << b;
  expect_replays_with_taehv(*with_taehv);

  InputSource camera;  // FFmpeg's lavfi test pattern stands in for one
  camera.kind = InputKind::camera;
  camera.format = "lavfi";
  camera.path = "testsrc2=size=64x48:rate=30";
  expect_replays_with_taehv(*live_run(taehv_preset(), [&](Engine& e) { set_input(e, camera); }));
}

TEST(EngineVace, TaehvsEncoderConditionsTheVideoAndReplaysExactly) {
  expect_taehvs_encoder_conditions_and_replays(
      [](Engine& engine, const InputSource& source) {
        VaceRequest r;
        r.source = source;
        engine.set_vace(r);
      },
      "engine_taehv_vace.mp4");
}

TEST(EngineV2v, TaehvsEncoderConditionsTheVideoAndReplaysExactly) {
  expect_taehvs_encoder_conditions_and_replays(
      [](Engine& engine, const InputSource& source) {
        V2vRequest r;
        r.source = source;
        r.strength = 0.7;
        engine.set_v2v(r);
      },
      "engine_taehv_v2v.mp4");
}

// #17's "camera -> first conditioned frame within a block (+ its decode)", counted in blocks: a
// camera chosen while the video runs conditions the block after the one in flight at the
// latest, and the blocks before it are those of the same video without a camera.
TEST(EngineVace, ACameraChosenMidStreamConditionsTheNextBlock) {
  LiveRun plain;
  {
    Engine engine(tiny(), preset(), plain.callbacks(), kSide, kSide, options());
    engine.start(kPrompt, kSeed);
    plain.finish(engine, 6);
  }
  LiveRun run;
  // The camera opens beside the video (EngineOptions::open_inputs_ahead): the blocks made by
  // the time it is open.
  std::atomic<int64_t> made_when_open{-1};
  EngineOptions o = options();
  o.inputs.frames = [&run, &made_when_open, base = o.inputs.frames](const InputSource& s, int h,
                                                                    int w) {
    auto opened = base(s, h, w);
    made_when_open = static_cast<int64_t>(run.blocks());
    return opened;
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 2; }));
  const auto delivered = static_cast<int64_t>(run.blocks());  // block `delivered` is in flight
  VaceRequest r;
  r.source = test_pattern_camera();
  engine.set_vace(r);
  ASSERT_TRUE(wait_for([&] { return made_when_open.load() >= 0; }));
  run.finish(engine, static_cast<size_t>(made_when_open.load()) + 3);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  const auto sets = events_of(*run.timeline, EventKind::vace);
  ASSERT_EQ(sets.size(), 1u);
  const int64_t first = sets[0].block;
  EXPECT_GE(first, delivered);
  EXPECT_LE(first, made_when_open.load() + 1)
      << "the camera, once open, waited more than the block in flight";
  std::lock_guard lock(run.m);
  ASSERT_GT(run.latents.size(), static_cast<size_t>(first));
  ASSERT_GT(plain.latents.size(), static_cast<size_t>(first)) << "the plain run is too short";
  for (int64_t b = 0; b < first; ++b)
    EXPECT_EQ(max_diff(run.latents[b], plain.latents[b]), 0.0f) << "block " << b;
  EXPECT_GT(max_diff(run.latents[first], plain.latents[first]), 0.0f)
      << "the first block after the event is conditioned";
  // Its latency, picked -> first conditioned frame ready, is on the stats (the overlay's line),
  // with the opening part of it, and the engine thread's time feeding the input.
  const EngineStats stats = engine.stats();
  EXPECT_GT(stats.last_input_ms, 0.0);
  EXPECT_GT(stats.last_input_open_ms, 0.0);
  EXPECT_LT(stats.last_input_open_ms, stats.last_input_ms);
  EXPECT_GT(stats.thread_time.inputs_ms, 0.0);
}

// A source that fails after `good` frames (a camera unplugged, a file that cannot be read).
struct FailingSource final : VaceFrameSource {
  int64_t good;
  explicit FailingSource(int64_t good) : good(good) {}
  at::Tensor next_frames(int64_t count) override {
    if (count > good) throw IoError("camera '/dev/video9' was unplugged");
    good -= count;
    return at::zeros({count, 3, kSide, kSide});
  }
};

TEST(EngineVace, BadInputsAreReportedAndTheVideoGoesOn) {
  LiveRun run;
  EngineOptions o = options();
  o.inputs.frames = [base = o.inputs.frames](const InputSource& s, int h,
                                             int w) -> std::shared_ptr<VaceFrameSource> {
    if (s.path == "fails-after-one-block") return std::make_shared<FailingSource>(9);
    return base(s, h, w);
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 1; }));
  engine.set_vace(video_request(temp_dir("engine_inputs") / "missing.mp4"));
  ASSERT_TRUE(wait_for([&] { return run.error_count() >= 1; }));
  EXPECT_NE(run.errors[0].find("missing.mp4"), std::string::npos) << run.errors[0];
  engine.set_vace_scale(0.5);  // no input: reported
  ASSERT_TRUE(wait_for([&] { return run.error_count() >= 2; }));
  VaceRequest failing = video_request("fails-after-one-block");
  engine.set_vace(failing);
  ASSERT_TRUE(wait_for([&] { return run.error_count() >= 3; }));
  const size_t at_failure = run.blocks();
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= at_failure + 2; })) << "the video stopped";
  EXPECT_EQ(engine.stats().state, "running");
  EXPECT_TRUE(engine.stats().inputs.vace.empty());
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(run.m);
    return run.timeline.has_value();
  }));
  std::lock_guard lock(run.m);
  // The scale without an input, then the unplugged source, by name.
  EXPECT_NE(run.errors[1].find("no VACE input"), std::string::npos) << run.errors[1];
  EXPECT_NE(run.errors[2].find("unplugged"), std::string::npos) << run.errors[2];
  const auto sets = events_of(*run.timeline, EventKind::vace);
  const auto offs = events_of(*run.timeline, EventKind::vace_off);
  ASSERT_EQ(sets.size(), 1u);
  ASSERT_EQ(offs.size(), 1u);
  EXPECT_EQ(offs[0].block, sets[0].block + 1);  // one block conditioned, then dropped
}

// A camera unplugged mid-stream: it keeps handing out its last frame and reports why
// (LiveVideoSource::counts().error), as after `used` frames here.
struct UnpluggedSource final : VaceFrameSource {
  int64_t given = 0;
  at::Tensor next_frames(int64_t count) override {
    given += count;
    return at::zeros({count, 3, kSide, kSide});
  }
  Counts counts() const override {
    return {0, given > 9 ? given - 9 : 0, given >= 9 ? "/dev/video9: No such device" : ""};
  }
};

TEST(EngineVace, UnpluggedCameraIsDroppedBeforeTheNextBlock) {
  LiveRun run;
  EngineOptions o = options();
  o.inputs.frames = [](const InputSource&, int, int) -> std::shared_ptr<VaceFrameSource> {
    return std::make_shared<UnpluggedSource>();
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  VaceRequest r;
  r.source.kind = InputKind::video;  // the opener decides what it is
  r.source.path = "unplugged";
  engine.set_vace(r);
  engine.start(kPrompt, kSeed);
  run.finish(engine, 3);
  std::lock_guard lock(run.m);
  ASSERT_EQ(run.errors.size(), 1u);
  EXPECT_NE(run.errors[0].find("No such device"), std::string::npos) << run.errors[0];
  EXPECT_NE(run.errors[0].find("goes on without it"), std::string::npos) << run.errors[0];
  const auto offs = events_of(*run.timeline, EventKind::vace_off);
  ASSERT_EQ(offs.size(), 1u);
  EXPECT_EQ(offs[0].block, 1);  // block 0 took its 9 frames, then the error showed
  EXPECT_EQ(run.timeline->blocks, static_cast<int64_t>(run.latents.size()));
}

// A live camera paced by its frame rate: its next frames are never filmed when asked, and each
// read waits for them. A block's frames go out before the next block's read waits for the
// camera (Performance::inputs_wait_for_frames), not after it: by each read, every block before
// has been handed out.
struct PacedSource final : VaceFrameSource {
  std::function<int64_t()> frames_out;
  std::mutex m;
  std::vector<int64_t> out_at_read;  // frames handed out when each read began
  at::Tensor first_frames(int64_t count) override { return read(count, false); }
  at::Tensor next_frames(int64_t count) override { return read(count, true); }
  bool has_frames(int64_t) const override { return false; }
  at::Tensor read(int64_t count, bool wait) {
    {
      std::lock_guard lock(m);
      out_at_read.push_back(frames_out());
    }
    if (wait) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // being filmed
    return at::zeros({count, 3, kSide, kSide});
  }
};

TEST(EngineVace, APacedCameraWaitsOnlyAfterTheFramesBeforeAreOut) {
  LiveRun run;
  std::atomic<int64_t> frames{0};
  Engine::Callbacks callbacks = run.callbacks();
  callbacks.on_frame = [&](EngineFrame) { ++frames; };
  auto source = std::make_shared<PacedSource>();
  source->frames_out = [&] { return frames.load(); };
  EngineOptions o = options();
  o.inputs.frames = [source](const InputSource&, int, int) -> std::shared_ptr<VaceFrameSource> {
    return source;
  };
  Engine engine(tiny(), preset(), callbacks, kSide, kSide, o);
  VaceRequest r;
  r.source.kind = InputKind::video;  // the opener decides what it is
  r.source.path = "paced";
  engine.set_vace(r);
  engine.start(kPrompt, kSeed);
  run.finish(engine, 5);
  std::lock_guard lock(source->m);
  ASSERT_GE(source->out_at_read.size(), 4u);
  EXPECT_EQ(source->out_at_read[0], 0);
  for (size_t read = 1; read < 4; ++read)
    EXPECT_GT(source->out_at_read[read], source->out_at_read[read - 1])
        << "block " << read - 1 << "'s frames were still held when block " << read
        << " began waiting for the camera";
}

// A camera that takes long to open (a V4L2 device starting up) is opened beside the video
// (EngineOptions::open_inputs_ahead): the blocks go on meanwhile, and the camera conditions the
// block in flight when it is open. Here it opens only once two more blocks are out after the
// pick, which on the engine thread would never happen (the wait gives up after 60 s: failed).
// A scale sent after the pick waits for it; a prompt switch sent after it does not.
TEST(EngineVace, ACameraSlowToOpenDoesNotStopTheVideo) {
  LiveRun run;
  std::atomic<int64_t> made_when_open{-1};
  std::atomic<int64_t> picked_at{-1};
  std::atomic<bool> opening_shown{false};
  EngineOptions o = options();
  o.inputs.frames = [&](const InputSource&, int, int) -> std::shared_ptr<VaceFrameSource> {
    const bool went_on = wait_for(
        [&] {
          return static_cast<int64_t>(run.blocks()) >= picked_at.load() + 2 && opening_shown.load();
        },
        60000);
    if (!went_on) throw IoError("camera 'slow' gave up: the video stopped while it opened");
    made_when_open = static_cast<int64_t>(run.blocks());
    return std::make_shared<FailingSource>(int64_t{1} << 40);  // black frames, never fails
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 1; }));
  VaceRequest r;
  r.source.kind = InputKind::camera;
  r.source.path = "slow";
  picked_at = static_cast<int64_t>(run.blocks());
  engine.set_vace(r);
  engine.set_vace_scale(0.5);            // after the pick: waits for it, in order
  engine.switch_prompt("a blue whale");  // does not depend on the camera: does not wait
  // Meanwhile the stats say what is being opened (the input panel shows it).
  std::string opening;
  EXPECT_TRUE(wait_for([&] { return !(opening = engine.stats().inputs.opening).empty(); }, 60000));
  EXPECT_EQ(opening, r.source.describe());
  opening_shown = true;
  ASSERT_TRUE(wait_for([&] { return made_when_open.load() >= 0 || run.error_count() > 0; }));
  EXPECT_TRUE(wait_for([&] { return engine.stats().inputs.opening.empty(); }));
  run.finish(engine, static_cast<size_t>(made_when_open.load()) + 2);
  std::lock_guard lock(run.m);
  ASSERT_TRUE(run.errors.empty()) << run.errors.front();
  EXPECT_GE(made_when_open.load(), picked_at.load() + 2);
  const auto sets = events_of(*run.timeline, EventKind::vace);
  const auto scales = events_of(*run.timeline, EventKind::vace_scale);
  ASSERT_EQ(sets.size(), 1u);
  ASSERT_EQ(scales.size(), 1u);
  EXPECT_LE(sets[0].block, made_when_open.load() + 1);
  EXPECT_EQ(scales[0].block, sets[0].block);
  EXPECT_DOUBLE_EQ(scales[0].strength, 0.5);
  const auto cuts = events_of(*run.timeline, EventKind::cut);
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_LT(cuts[0].block, sets[0].block) << "the switch waited for the camera to open";
  EXPECT_GT(engine.stats().last_input_open_ms, 0.0);
}

// A source opened ahead for a pick that then fails (no VACE weights) is closed, not held; the
// camera asked for again is opened ahead again.
TEST(EngineVace, AnInputOpenedForAPickThatFailsIsClosed) {
  LiveRun run;
  std::weak_ptr<VaceFrameSource> opened;
  int opens = 0;
  std::mutex opened_mutex;
  EngineOptions o = options();
  o.inputs.frames = [&](const InputSource&, int, int) -> std::shared_ptr<VaceFrameSource> {
    auto source = std::make_shared<FailingSource>(int64_t{1} << 40);
    std::lock_guard lock(opened_mutex);
    opened = source;
    ++opens;
    return source;
  };
  Engine engine(tiny(/*vace=*/false), preset(), run.callbacks(), kSide, kSide, o);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 1; }));
  VaceRequest r;
  r.source.kind = InputKind::camera;
  r.source.path = "opened-for-nothing";
  engine.set_vace(r);
  ASSERT_TRUE(wait_for([&] { return run.error_count() >= 1; }));
  EXPECT_NE(run.errors[0].find("VACE is unavailable"), std::string::npos) << run.errors[0];
  {
    std::lock_guard lock(opened_mutex);
    // Opened ahead once (applying the pick opened nothing more), and closed since.
    EXPECT_EQ(opens, 1);
    EXPECT_TRUE(opened.expired()) << "the camera opened ahead is still held";
  }
  // Asked for again, it is opened ahead again (the first pick failed: it does not run).
  engine.set_vace(r);
  ASSERT_TRUE(wait_for([&] { return run.error_count() >= 2; }));
  std::lock_guard lock(opened_mutex);
  EXPECT_EQ(opens, 2);
  EXPECT_TRUE(opened.expired());
}

// A camera that, as a V4L2 device streaming, refuses a second open while it is open.
struct ExclusiveCamera final : VaceFrameSource {
  std::shared_ptr<VaceFrameSource> inner;
  std::atomic<int>& open;
  int64_t dropped = 7;  // reported as the camera's own count
  ExclusiveCamera(std::shared_ptr<VaceFrameSource> inner, std::atomic<int>& open)
      : inner(std::move(inner)), open(open) {}
  ~ExclusiveCamera() override { --open; }
  at::Tensor next_frames(int64_t count) override { return inner->next_frames(count); }
  at::Tensor first_frames(int64_t count) override { return inner->first_frames(count); }
  bool has_frames(int64_t count) const override { return inner->has_frames(count); }
  Counts counts() const override {
    Counts c = inner->counts();
    c.dropped = dropped;
    return c;
  }
};

// Inputs opened as options() opens them, cameras as ExclusiveCameras: `open` of them now,
// `opens` so far.
EngineOptions exclusive_camera_options(std::atomic<int>& open, std::atomic<int>& opens) {
  EngineOptions o = options();
  o.inputs.frames = [&open, &opens, base = o.inputs.frames](
                        const InputSource& s, int h, int w) -> std::shared_ptr<VaceFrameSource> {
    if (open.load() > 0) throw IoError("camera 'lavfi': Device or resource busy");
    auto camera = std::make_shared<ExclusiveCamera>(base(s, h, w), open);
    ++open;
    ++opens;
    return camera;
  };
  return o;
}

// The running camera asked for again with another preprocessor (the input panel resends the
// request) keeps its capture: opened once, no "busy", and the session replays exactly.
TEST(EngineVace, TheSameCameraAskedForAgainStaysOpen) {
  LiveRun run;
  std::atomic<int> open{0}, opens{0};
  const EngineOptions o = exclusive_camera_options(open, opens);
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  VaceRequest r;
  r.source = test_pattern_camera();
  engine.set_vace(r);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 2; }));
  r.source.preprocess = "edges";
  engine.set_vace(r);
  const size_t asked_at = run.blocks();
  run.finish(engine, asked_at + 2);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  EXPECT_EQ(opens.load(), 1);
  const auto sets = events_of(*run.timeline, EventKind::vace);
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].vace.source.preprocess, "edges");
  EXPECT_NE(sets[1].vace.source.path, sets[0].vace.source.path) << "a capture file each";
  expect_replays_bit_for_bit(*run.timeline, run.latents);
}

// VACE and video-to-video on the same camera (a camera opens once): both inputs read it through
// one capture and see the same frames (their capture files hold the same frames), and the
// session replays exactly.
TEST(EngineVace, VaceAndVideoToVideoShareOneCamera) {
  LiveRun run;
  std::atomic<int> open{0}, opens{0};
  const EngineOptions o = exclusive_camera_options(open, opens);
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, o);
  const InputSource camera = test_pattern_camera();
  VaceRequest vace;
  vace.source = camera;
  vace.source.preprocess = "edges";
  V2vRequest v2v;
  v2v.source = camera;
  v2v.strength = 0.7;
  engine.set_vace(vace);
  engine.set_v2v(v2v);
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 2; }));
  const InputStatus status = engine.stats().inputs;
  EXPECT_FALSE(status.vace.empty());
  EXPECT_FALSE(status.v2v.empty());
  EXPECT_EQ(status.dropped, 7) << "one camera's drops counted once";
  run.finish(engine, 3);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  EXPECT_EQ(opens.load(), 1);
  const auto vace_sets = events_of(*run.timeline, EventKind::vace);
  const auto v2v_sets = events_of(*run.timeline, EventKind::v2v);
  ASSERT_EQ(vace_sets.size(), 1u);
  ASSERT_EQ(v2v_sets.size(), 1u);
  const CapturedFrameSource a(vace_sets[0].vace.source.path, kSide, kSide);
  const CapturedFrameSource b(v2v_sets[0].v2v.source.path, kSide, kSide);
  ASSERT_EQ(a.frames(), 9 + 12 * (run.timeline->blocks - 1));
  ASSERT_EQ(b.frames(), a.frames());
  CapturedFrameSource read_a(vace_sets[0].vace.source.path, kSide, kSide);
  CapturedFrameSource read_b(v2v_sets[0].v2v.source.path, kSide, kSide);
  EXPECT_TRUE(at::equal(read_a.next_frames(a.frames()), read_b.next_frames(b.frames())))
      << "the two inputs saw different frames of the camera";
  expect_replays_bit_for_bit(*run.timeline, run.latents);
}

TEST(EngineVace, NoVaceWeightsIsAClearMessage) {
  LiveRun run;
  Engine engine(tiny(/*vace=*/false), preset(), run.callbacks(), kSide, kSide, options());
  engine.set_vace(video_request("any.mp4"));
  engine.start(kPrompt, kSeed);
  ASSERT_TRUE(wait_for([&] { return run.blocks() >= 2 && run.error_count() >= 1; }));
  EXPECT_NE(run.errors[0].find("VACE is unavailable"), std::string::npos) << run.errors[0];
  const EngineStats stats = engine.stats();
  EXPECT_FALSE(stats.inputs.vace_available);
  EXPECT_NE(stats.inputs.vace_status.find("VACE: off"), std::string::npos)
      << stats.inputs.vace_status;
}

TEST(EngineV2v, StrengthMovesLiveAndReplays) {
  const auto video = write_video("engine_v2v.mp4", moving_bar(10, kSide, kSide), 16);
  LiveRun run;
  Engine* engine_ptr = nullptr;
  run.after_block = [&](int64_t block) {
    if (block == 0) engine_ptr->set_v2v_strength(0.9);
  };
  Engine engine(tiny(), preset(), run.callbacks(), kSide, kSide, options());
  engine_ptr = &engine;
  V2vRequest r;
  r.source.kind = InputKind::video;
  r.source.path = video.string();
  r.strength = 0.7;
  engine.set_v2v(r);
  engine.start(kPrompt, kSeed);
  run.finish(engine, 3);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  const auto strengths = events_of(*run.timeline, EventKind::v2v_strength);
  ASSERT_EQ(strengths.size(), 1u);
  EXPECT_EQ(strengths[0].block, 1);
  expect_replays_bit_for_bit(*run.timeline, run.latents);
}

// A prompt switch that arrives mid-block gives that block up and makes it again
// (EngineOptions::abandon_blocks). With an input running, the block made again takes the frames
// the input gave it the first time, at the scale or strength of now: the input skips no frames
// and the session replays bit for bit. `set_input` sets a VACE or a video-to-video input.
void expect_a_given_up_block_keeps_its_input_frames(
    const std::function<void(Engine&, const std::filesystem::path&)>& set_input,
    const char* video_name) {
  const auto video = write_video(video_name, moving_bar(10, kSide, kSide), 16);
  LiveRun run;
  std::atomic<bool> switched{false};
  Engine::Callbacks cb = run.callbacks();
  Engine* engine_ptr = nullptr;
  // Block 1's frames go out between block 2's denoising steps (block 0's, 1 + 4 (F - 1) of
  // them, before it starts): the switch on block 1's first frame gives block 2 up.
  const int64_t first_block_frames = 1 + 4 * (preset().frames_per_block - 1);
  cb.on_frame = [&](EngineFrame frame) {
    if (run.blocks() == 2 && frame.index >= first_block_frames && !switched.exchange(true))
      engine_ptr->switch_prompt("a blue whale");
  };
  Engine engine(tiny(), preset(), cb, kSide, kSide, options());
  engine_ptr = &engine;
  set_input(engine, video);
  engine.start(kPrompt, kSeed);
  run.finish(engine, 5);
  ASSERT_EQ(run.error_count(), 0u) << run.errors.front();
  ASSERT_TRUE(switched.load());
  const EngineStats stats = engine.stats();
  ASSERT_GE(stats.abandoned_blocks, 1) << "no block was given up: the test shows nothing";
  // 9 frames for the first block, 12 for each later one: none for the block given up.
  EXPECT_EQ(stats.inputs.frames_used, 9 + 12 * (run.timeline->blocks - 1));
  expect_replays_bit_for_bit(*run.timeline, run.latents);
}

// Inputs readied when the session opens (Performance::set_warm_inputs, LiveInputs::warm: the
// studio's first pick as fast as the later ones): the black video's first two blocks are in the
// factory's record before any input, and a VACE input and a video-to-video input picked
// mid-stream then give the same latents, bit for bit, as without. The default (unset) readies
// nothing on the CPU.
TEST(EngineInputs, ReadiedAtTheSessionsOpenTheyGiveTheSameVideo) {
  const auto video = write_video("engine_warm.mp4", moving_bar(10, kSide, kSide), 16);
  struct Run {
    int64_t recorded_at_start = 0;
    std::vector<at::Tensor> latents;
  };
  auto run = [&](std::optional<bool> warm, bool inputs = true) {
    Performance p(tiny(), preset(), kSide, kSide);
    p.set_inputs(ffmpeg_input_opener(), temp_dir("engine_warm") / "captures");
    p.set_warm_inputs(warm);
    p.start(PromptMix::single(kPrompt), kSeed);
    Run r;
    r.recorded_at_start = p.factory().black_inactive_latents()->blocks(kSide, kSide);
    r.latents.push_back(p.next_block().to(at::kCPU).clone());
    if (inputs) p.set_vace(video_request(video));
    for (int b = 0; b < 3; ++b) r.latents.push_back(p.next_block().to(at::kCPU).clone());
    V2vRequest v2v;
    v2v.source.kind = InputKind::video;
    v2v.source.path = video.string();
    v2v.strength = 0.7;
    if (inputs) p.set_v2v(v2v);
    for (int b = 0; b < 2; ++b) r.latents.push_back(p.next_block().to(at::kCPU).clone());
    EXPECT_TRUE(p.take_input_messages().empty());
    p.stop();
    return r;
  };
  const Run readied = run(true);
  const Run plain = run(false);
  EXPECT_EQ(readied.recorded_at_start, 2);
  EXPECT_EQ(plain.recorded_at_start, 0);
  EXPECT_EQ(run(std::nullopt).recorded_at_start, 0) << "readied on the CPU by default";
  ASSERT_EQ(readied.latents.size(), plain.latents.size());
  for (size_t b = 0; b < plain.latents.size(); ++b)
    EXPECT_EQ(max_diff(readied.latents[b], plain.latents[b]), 0.0f) << "block " << b;
  // The inputs conditioned those blocks at all.
  const Run without_inputs = run(true, false);
  EXPECT_GT(max_diff(readied.latents[1], without_inputs.latents[1]), 1e-4f);
  EXPECT_GT(max_diff(readied.latents[5], without_inputs.latents[5]), 1e-4f);

  // Without VACE weights the readying takes the video-to-video encoder: nothing recorded, the
  // same video.
  auto video_to_video = [&](bool warm) {
    Performance p(tiny(/*vace=*/false), preset(), kSide, kSide);
    p.set_inputs(ffmpeg_input_opener(), temp_dir("engine_warm") / "captures");
    p.set_warm_inputs(warm);
    p.start(PromptMix::single(kPrompt), kSeed);
    EXPECT_EQ(p.factory().black_inactive_latents()->blocks(kSide, kSide), 0);
    V2vRequest v2v;
    v2v.source.kind = InputKind::video;
    v2v.source.path = video.string();
    v2v.strength = 0.7;
    p.set_v2v(v2v);
    std::vector<at::Tensor> latents;
    for (int b = 0; b < 2; ++b) latents.push_back(p.next_block().to(at::kCPU).clone());
    p.stop();
    return latents;
  };
  const auto v2v_readied = video_to_video(true), v2v_plain = video_to_video(false);
  for (size_t b = 0; b < v2v_plain.size(); ++b)
    EXPECT_EQ(max_diff(v2v_readied[b], v2v_plain[b]), 0.0f) << "video-to-video block " << b;
}

TEST(EngineVace, ABlockGivenUpMidWayKeepsItsControlFrames) {
  expect_a_given_up_block_keeps_its_input_frames(
      [](Engine& engine, const std::filesystem::path& video) {
        engine.set_vace(video_request(video));
      },
      "engine_given_up_vace.mp4");
}

TEST(EngineV2v, ABlockGivenUpMidWayKeepsItsInputFrames) {
  expect_a_given_up_block_keeps_its_input_frames(
      [](Engine& engine, const std::filesystem::path& video) {
        V2vRequest r;
        r.source.kind = InputKind::video;
        r.source.path = video.string();
        engine.set_v2v(r);
      },
      "engine_given_up_v2v.mp4");
}

TEST(InputTimeline, EventsRoundTripAndBadFieldsAreNamed) {
  Timeline t;
  t.preset = "p";
  t.height = t.width = 32;
  t.blocks = 4;
  TimelineEvent start;
  start.mix = PromptMix::single("x");
  t.events.push_back(start);
  TimelineEvent vace;
  vace.kind = EventKind::vace;
  vace.block = 1;
  vace.vace.source = {InputKind::video, "/tmp/a.mp4", "", 21, "gray"};
  vace.vace.mode = "inpaint";
  vace.vace.scale = 0.75;
  vace.vace.mask = "/tmp/m.png";
  t.events.push_back(vace);
  TimelineEvent scale;
  scale.kind = EventKind::vace_scale;
  scale.block = 2;
  scale.strength = 1.25;
  t.events.push_back(scale);
  TimelineEvent v2v;
  v2v.kind = EventKind::v2v;
  v2v.block = 3;
  v2v.v2v.source = {InputKind::frames, "/tmp/c.rgb8", "", 0, ""};
  v2v.v2v.strength = 0.5;
  t.events.push_back(v2v);
  const Timeline back = parse_timeline(to_json(t).dump(), "t.json");
  ASSERT_EQ(back.events.size(), 4u);
  EXPECT_EQ(back.events[1].vace.source.offset, 21);
  EXPECT_EQ(back.events[1].vace.source.preprocess, "gray");
  EXPECT_EQ(back.events[1].vace.mode, "inpaint");
  EXPECT_EQ(back.events[1].vace.mask, "/tmp/m.png");
  EXPECT_EQ(back.events[2].strength, 1.25);
  EXPECT_EQ(back.events[3].v2v.source.kind, InputKind::frames);
  EXPECT_EQ(back.events[3].v2v.strength, 0.5);

  auto error_of = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = to_json(t);
    edit(j);
    try {
      parse_timeline(j.dump(), "t.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of([](auto& j) {
              j["events"][1]["source"]["kind"] = "webcam";
            }).find("events[1].source.kind"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["events"][1]["mode"] = "depth"; }).find("events[1].mode"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["events"][2]["scale"] = 3.0; }).find("events[2].scale"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["events"][3]["strength"] = 0.0; }).find("events[3].strength"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) {
              j["events"][1]["source"]["preprocess"] = "blur";
            }).find("events[1].source.preprocess"),
            std::string::npos);
}

TEST(Preprocess, GrayAndSobelEdgesOnAHandCheckedImage) {
  // 1 frame, 4x6: black (-1) left of column 3, white (+1) from it; one red pixel.
  at::Tensor f = at::full({1, 3, 4, 6}, -1.0);
  f.narrow(3, 3, 3).fill_(1.0);
  f[0][0][0][0] = 1.0;  // red at (0, 0): luma 0.299 -> -1 + 2 * 0.299
  const at::Tensor gray = preprocess_frames(f, "gray");
  ASSERT_EQ(gray.sizes(), f.sizes());
  EXPECT_NEAR(gray[0][1][0][0].item<float>(), -1.0 + 2 * 0.299, 1e-6);
  EXPECT_NEAR(gray[0][2][2][4].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(gray[0][0][2][1].item<float>(), -1.0, 1e-6);

  f[0][0][0][0] = -1.0;
  const at::Tensor edges = preprocess_frames(f, "edges");
  ASSERT_EQ(edges.sizes(), f.sizes());
  // Sobel x on a unit step is 1 + 2 + 1 = 4 on both columns beside it, / 4 -> 1 (white); 0
  // (black, -1) everywhere else, the replicated border included.
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 6; ++x)
      EXPECT_NEAR(edges[0][1][y][x].item<float>(), (x == 2 || x == 3) ? 1.0 : -1.0, 1e-6)
          << y << "," << x;
  EXPECT_THROW(preprocess_frames(f, "blur"), ConfigError);
}

TEST(CapturedFrames, WrittenOnTheirOwnThreadAndInTheFileAfterAFlush) {
  const auto path = temp_dir("engine_inputs") / "flushed.rgb8";
  const at::Tensor frames =
      at::randint(0, 256, {3, 3, 8, 16}, at::kByte).to(at::kFloat) / 127.5 - 1;
  FrameCaptureWriter w(path, 8, 16);
  for (int i = 0; i < 6; ++i) w.append(frames);  // more than the writer queues: append waits
  w.flush();
  const CapturedFrameSource source(path, 8, 16);
  EXPECT_EQ(source.frames(), 18) << "every frame appended is in the file, the writer still open";
  EXPECT_THROW(w.append(frames.narrow(2, 0, 4)), Error) << "frames of another size";
}

TEST(CapturedFrames, AFailedWriteIsReportedNamingTheFile) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const at::Tensor frames = at::zeros({2, 3, 8, 16});
  FrameCaptureWriter w("/dev/full", 8, 16);  // the header is buffered; the first flush fails
  w.append(frames);
  try {
    w.flush();
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/full"), std::string::npos) << e.what();
  }
  EXPECT_THROW(w.append(frames), IoError) << "the next block's append says it too";
}

TEST(CapturedFrames, RoundTripExactlyAndCheckTheSize) {
  const auto path = temp_dir("engine_inputs") / "round.rgb8";
  const at::Tensor u8 = at::randint(0, 256, {5, 3, 8, 16}, at::kByte);
  const at::Tensor frames = u8.to(at::kFloat).div(127.5).sub(1.0);
  {
    FrameCaptureWriter w(path, 8, 16);
    w.append(frames.narrow(0, 0, 2));
    w.append(frames.narrow(0, 2, 3));
    EXPECT_EQ(w.frames(), 5);
  }
  CapturedFrameSource source(path, 8, 16, /*offset=*/1);
  EXPECT_EQ(source.frames(), 5);
  const at::Tensor back = source.next_frames(6);  // 4 left, then the last one repeated
  EXPECT_EQ(max_diff(back.narrow(0, 0, 4), frames.narrow(0, 1, 4)), 0.0f);
  EXPECT_EQ(max_diff(back[5], frames[4]), 0.0f);
  try {
    CapturedFrameSource wrong(path, 16, 16);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("round.rgb8"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
