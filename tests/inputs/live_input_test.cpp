// Live control inputs (cameras and other FFmpeg input devices) through LiveVideoSource. There is
// no camera here: FFmpeg's lavfi input device stands in for one (testsrc2 draws a moving picture;
// its `realtime` filter paces it like a camera, without it frames come as fast as they decode).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "longlive/control_input.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/session.h"
#include "longlive/vace.h"

namespace longlive::test {
namespace {

LiveVideoOptions test_pattern(const std::string& spec) {
  LiveVideoOptions o;
  o.format = "lavfi";
  o.device = spec;
  return o;
}

TEST(LiveInput, PacedInputArrivesOnTheFpsGrid) {
  LiveVideoSource source(test_pattern("testsrc2=size=160x120:rate=30,realtime"), 48, 64);
  const auto begin = std::chrono::steady_clock::now();
  const at::Tensor first = source.next_frames(4);
  const at::Tensor frames = source.next_frames(8);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(frames.sizes(), (at::IntArrayRef{8, 3, 48, 64}));
  EXPECT_GE(frames.min().item<float>(), -1.0f);
  EXPECT_LE(frames.max().item<float>(), 1.0f);
  // 12 frames of a 16 fps grid from a real-time input take about 0.7 s: the generator waits for
  // the camera instead of inventing frames (the bound only fails when nothing waits).
  EXPECT_GE(seconds, 0.5);
  const LiveVideoSource::Stats stats = source.stats();
  EXPECT_EQ(stats.handed_out, 12);
  EXPECT_EQ(stats.repeated, 0);
  EXPECT_NEAR(stats.input_fps, 30.0, 1e-6);
  // About 16 of every 30 input frames fall on the grid.
  ASSERT_GT(stats.captured, 12);
  EXPECT_NEAR(static_cast<double>(stats.on_grid) / stats.captured, 16.0 / 30.0, 0.12);
  // A moving picture: frames differ.
  EXPECT_GT((frames[7] - first[0]).abs().max().item<float>(), 0.1f);
}

TEST(LiveInput, AGeneratorThatFallsBehindDropsTheOldestAndCountsThem) {
  LiveVideoOptions o = test_pattern("testsrc2=size=160x120:rate=30");  // as fast as it decodes
  o.queue_frames = 6;
  LiveVideoSource source(o, 32, 32);
  source.next_frames(1);
  LiveVideoSource::Stats stats;
  for (int i = 0; i < 500 && (stats = source.stats()).dropped == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(stats.dropped, 0);
  EXPECT_EQ(source.next_frames(6).size(0), 6);
  stats = source.stats();
  // Every frame kept on the grid was handed out, dropped, or still waits in the bounded queue.
  EXPECT_LE(stats.on_grid - stats.handed_out - stats.dropped, o.queue_frames);
  EXPECT_GE(stats.on_grid - stats.handed_out - stats.dropped, 0);
}

TEST(LiveInput, AnInputThatStopsRepeatsItsLastFrame) {
  // Half a second of input: 8 frames on the 16 fps grid, then the input ends.
  LiveVideoSource source(test_pattern("testsrc2=size=64x48:rate=30:duration=0.5"), 32, 32);
  const at::Tensor frames = source.next_frames(12);
  const LiveVideoSource::Stats stats = source.stats();
  EXPECT_EQ(frames.size(0), 12);
  EXPECT_EQ(stats.on_grid, 8);
  EXPECT_EQ(stats.repeated, 4);
  EXPECT_TRUE(at::equal(frames[11], frames[7]));
  EXPECT_NE(stats.error.find("ended"), std::string::npos) << stats.error;
}

TEST(LiveInput, AMissingCameraOrFormatIsNamed) {
  LiveVideoOptions camera;
  camera.device = "/dev/video97";
  try {
    LiveVideoSource source(camera, 32, 32);
    FAIL() << "opened a camera that does not exist";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/dev/video97"), std::string::npos) << what;
    EXPECT_NE(what.find("v4l2"), std::string::npos) << what;
  }
  LiveVideoOptions unknown = camera;
  unknown.format = "no-such-device-format";
  try {
    LiveVideoSource source(unknown, 32, 32);
    FAIL() << "accepted an unknown input format";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-device-format"), std::string::npos);
  }
}

// A live input conditions the tiny model through VACE block by block, like a file does.
TEST(LiveInput, FeedsVaceBlockByBlock) {
  SessionOverrides overrides;
  overrides.text_encoder = false;
  overrides.live_decoder = false;
  ModelSpec model;
  model.tiny_random = true;
  model.device = at::Device(at::kCPU);
  SessionFactory factory(model, overrides);
  Preset preset;
  preset.name = "live-vace";
  auto session = factory.open(preset, 32, 32);
  StreamGenerator& g = *session->generator;
  ASSERT_TRUE(factory.vace_available()) << factory.vace_status();
  auto source = std::make_shared<LiveVideoSource>(test_pattern("testsrc2=size=64x48:rate=30"),
                                                  session->height, session->width);
  VaceConditioner vace(factory.vace_encoder(), VaceSettings{}, source);
  auto gen = at::detail::createCPUGenerator(3);
  const auto& o = g.options();
  g.start(at::randn({1, o.model.text_len, o.model.text_dim}, gen), 11);
  for (int b = 0; b < 2; ++b) {
    vace.before_block(g);
    EXPECT_TRUE(at::isfinite(g.next_block()).all().item<bool>());
  }
  // 1 + 4 (F - 1) frames for the first block, 4 F after it (F latent frames per block).
  const int64_t f = o.frames_per_block;
  EXPECT_EQ(source->stats().handed_out, 1 + 4 * (f - 1) + 4 * f);
}

}  // namespace
}  // namespace longlive::test
