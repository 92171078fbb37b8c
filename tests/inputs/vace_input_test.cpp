// VACE control inputs end to end on the CPU: a small generated video file read through FFmpeg
// (resampled to 16 fps, scaled and cropped, looped), encoded with the Wan VAE encoder and fed to
// the tiny random model block by block. The output must be finite, differ from the same run
// without VACE, and be deterministic.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "engine_support.h"
#include "fixtures.h"
#include "input_videos.h"
#include "log_capture.h"
#include "longlive/control_input.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/recorder.h"
#include "longlive/session.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"

namespace longlive::test {
namespace {

TEST(VideoFileSource, ResamplesTo16FpsScalesAndLoops) {
  const int64_t n = 10;
  // 48x96 source: covering 32x32 scales it to 32x64 and keeps the middle 32 columns.
  const auto path = write_video("bar16.mp4", moving_bar(n, 48, 96), 16);
  VideoFileSource source(path, 32, 32, 16.0);
  EXPECT_EQ(source.frames(), n);
  const at::Tensor first = source.next_frames(n);
  ASSERT_EQ(first.sizes(), at::IntArrayRef({n, 3, 32, 32}));
  EXPECT_GE(first.min().item<float>(), -1.0f);
  EXPECT_LE(first.max().item<float>(), 1.0f);
  // Past the end it starts again from the first frame.
  const at::Tensor again = source.next_frames(n + 2);
  EXPECT_EQ((again.narrow(0, 0, n) - first).abs().max().item<float>(), 0.0f);
  EXPECT_EQ((again.narrow(0, n, 2) - first.narrow(0, 0, 2)).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(source.position(), 2 * n + 2);

  // An 8 fps video shows each frame twice at 16 fps.
  const auto slow = write_video("bar8.mp4", moving_bar(n, 32, 32), 8);
  VideoFileSource resampled(slow, 32, 32, 16.0);
  EXPECT_EQ(resampled.frames(), 2 * n);
  const at::Tensor pairs = resampled.next_frames(2 * n);
  EXPECT_EQ((pairs[0] - pairs[1]).abs().max().item<float>(), 0.0f);
  EXPECT_GT((pairs[1] - pairs[2]).abs().max().item<float>(), 0.1f);
}

// An input of another aspect ratio than the session's is cropped, and the user is told: once,
// naming the file, both sizes and how much is not used. One of the session's aspect is not.
TEST(VideoFileSource, AnotherAspectRatioIsSaidOnce) {
  const LogCapture log;
  const auto wide = write_video("wide.mp4", moving_bar(4, 48, 96), 16);
  VideoFileSource source(wide, 32, 32, 16.0);
  source.next_frames(4);
  const std::vector<std::string> lines = log.lines();
  const auto said = std::count_if(lines.begin(), lines.end(), [](const std::string& line) {
    return line.find("another aspect ratio") != std::string::npos;
  });
  EXPECT_EQ(said, 1) << "once for the file, not per frame";
  EXPECT_TRUE(log.has("wide.mp4': 96x48 has another aspect ratio than the session's 32x32"));
  EXPECT_TRUE(log.has("50 % of its width not used"));
  // And the source says it where the input is shown (the studio's input panel).
  EXPECT_EQ(source.counts().framing, "96x48 cropped to 32x32: 50 % of its width not used");

  const LogCapture square_log;
  const auto square = write_video("square.mp4", moving_bar(4, 64, 64), 16);
  VideoFileSource same_aspect(square, 32, 32, 16.0);
  same_aspect.next_frames(4);
  EXPECT_FALSE(square_log.has("another aspect ratio"));
  EXPECT_TRUE(same_aspect.counts().framing.empty()) << same_aspect.counts().framing;
}

TEST(VideoFileSource, UnreadableInputsNameTheFile) {
  const auto missing = temp_dir("vace_input") / "missing.mp4";
  try {
    VideoFileSource source(missing, 32, 32);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.mp4"), std::string::npos) << e.what();
  }
  const auto text = temp_dir("vace_input") / "not_a_video.mp4";
  std::ofstream(text) << "this is not a video";
  EXPECT_THROW(VideoFileSource(text, 32, 32), Error);
}

ModelSpec tiny() { return tiny_model(at::Device(at::kCPU)); }

Preset preset() {
  Preset p;
  p.name = "vace-test";
  p.local_attn_frames = 9;
  return p;
}

// Blocks of the tiny model with (or without) the control video, fixed seed and prompt.
at::Tensor generate(const std::filesystem::path& video, bool with_vace, int64_t blocks,
                    std::string* status = nullptr) {
  SessionOverrides overrides;
  overrides.text_encoder = false;
  overrides.live_decoder = false;
  SessionFactory factory(tiny(), overrides);
  auto session = factory.open(preset(), 32, 32);
  StreamGenerator& g = *session->generator;
  if (status) *status = factory.vace_status();
  EXPECT_TRUE(factory.vace_available()) << factory.vace_status();
  EXPECT_TRUE(g.vace_available());
  std::unique_ptr<VaceConditioner> vace;
  if (with_vace) {
    VaceSettings settings;
    settings.scale = 1.0;
    vace = std::make_unique<VaceConditioner>(
        factory.vace_encoder(), settings,
        std::make_shared<VideoFileSource>(video, session->height, session->width));
  }
  auto gen = at::detail::createCPUGenerator(3);
  const auto& o = g.options();
  g.start(at::randn({1, o.model.text_len, o.model.text_dim}, gen), 11);
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < blocks; ++b) {
    if (vace) vace->before_block(g);
    out.push_back(g.next_block().clone());
  }
  if (vace) {
    EXPECT_EQ(vace->blocks(), blocks);
  }
  return at::cat(out, 1);
}

TEST(VaceEndToEnd, ControlVideoChangesTheOutputDeterministically) {
  // 10 frames at 16 fps: 3 blocks take 9 + 12 + 12 frames, so the file loops.
  const auto video = write_video("control.mp4", moving_bar(10, 32, 32), 16);
  std::string status;
  const at::Tensor plain = generate(video, false, 3, &status);
  const at::Tensor a = generate(video, true, 3);
  const at::Tensor b = generate(video, true, 3);
  EXPECT_NE(status.find("VACE:"), std::string::npos);
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  EXPECT_EQ((a - b).abs().max().item<float>(), 0.0f) << "VACE run is not deterministic";
  EXPECT_GT((a - plain).abs().max().item<float>(), 1e-3f) << "the control video changed nothing";
}

TEST(VideoToVideoEndToEnd, InputVideoChangesTheOutputDeterministically) {
  const auto video = write_video("v2v.mp4", moving_bar(10, 32, 32), 16);
  auto run = [&](bool with_input) {
    SessionOverrides overrides;
    overrides.text_encoder = false;
    overrides.live_decoder = false;
    SessionFactory factory(tiny(), overrides);
    auto session = factory.open(preset(), 32, 32);
    StreamGenerator& g = *session->generator;
    std::unique_ptr<VideoToVideo> v2v;
    if (with_input)
      v2v = std::make_unique<VideoToVideo>(factory.video_encoder(), 0.7,
                                           std::make_shared<VideoFileSource>(video, 32, 32));
    g.start(at::zeros({1, g.options().model.text_len, g.options().model.text_dim}), 4);
    std::vector<at::Tensor> out;
    for (int b = 0; b < 3; ++b) {
      if (v2v) v2v->before_block(g);
      out.push_back(g.next_block().clone());
    }
    return at::cat(out, 1);
  };
  const at::Tensor plain = run(false), a = run(true), b = run(true);
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  EXPECT_EQ((a - b).abs().max().item<float>(), 0.0f);
  EXPECT_GT((a - plain).abs().max().item<float>(), 1e-3f);
}

TEST(VaceEndToEnd, ModeSettingsAreChecked) {
  SessionOverrides overrides;
  overrides.text_encoder = false;
  overrides.live_decoder = false;
  SessionFactory factory(tiny(), overrides);
  auto session = factory.open(preset(), 32, 32);
  VaceSettings inpaint;
  inpaint.mode = VaceMode::inpaint;
  const auto video = write_video("inpaint.mp4", moving_bar(4, 32, 32), 16);
  auto source = std::make_shared<VideoFileSource>(video, 32, 32);
  EXPECT_THROW(VaceConditioner(factory.vace_encoder(), inpaint, source), ConfigError);  // no mask
  VaceSettings reference;
  reference.mode = VaceMode::reference;
  EXPECT_THROW(VaceConditioner(factory.vace_encoder(), reference, nullptr), ConfigError);
  EXPECT_THROW(VaceConditioner(factory.vace_encoder(), VaceSettings{}, nullptr), ConfigError);
  EXPECT_THROW(parse_vace_mode("depth"), ConfigError);

  // Inpainting with a mask over the left half, and a reference image alone: both run.
  inpaint.mask = at::zeros({32, 32});
  inpaint.mask.narrow(1, 0, 16).fill_(1.0);
  VaceConditioner painter(factory.vace_encoder(), inpaint, source);
  reference.references = source->next_frames(1);
  VaceConditioner referee(factory.vace_encoder(), reference, nullptr);
  StreamGenerator& g = *session->generator;
  const auto& o = g.options();
  g.start(at::zeros({1, o.model.text_len, o.model.text_dim}), 1);
  painter.before_block(g);
  EXPECT_TRUE(at::isfinite(g.next_block()).all().item<bool>());
  referee.before_block(g);
  EXPECT_EQ(g.vace()->context.size(1), 1);  // one reference frame, zero-padded in the model
  EXPECT_TRUE(at::isfinite(g.next_block()).all().item<bool>());
}

}  // namespace
}  // namespace longlive::test
