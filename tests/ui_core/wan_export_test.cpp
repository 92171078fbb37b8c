// The studio's quality export: session latents re-decoded with the Wan VAE into an MP4 (the tiny
// random VAE stands in for Wan2.1_VAE.pth with the tiny random model), read back and compared
// with the decoder's own output.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <iostream>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/recorder.h"
#include "longlive/wan_vae.h"
#include "wan_export.h"

namespace longlive::test {
namespace {

using ui::SessionLatents;

// Two blocks of 3 latent frames, 4x4 latent pixels (32x32 video).
SessionLatents tiny_session() {
  at::manual_seed(5);
  SessionLatents s;
  s.model.tiny_random = true;
  s.blocks = {at::randn({1, 3, 16, 4, 4}), at::randn({1, 3, 16, 4, 4})};
  s.prompts = {{0, "a red fox"}, {9, "a blue whale"}};
  return s;
}

RecorderOptions options_for(const std::filesystem::path& path) {
  RecorderOptions o;
  o.path = path;
  o.codec = "libx264";
  o.crf = 10;
  return o;
}

ui::WanExportOptions on_cpu() {
  ui::WanExportOptions o;
  o.device = at::Device(at::kCPU);
  return o;
}

// The engine's cap dropped the video's first block: the export is what remains, says so, and
// its chapters are shifted to the kept start.
TEST(WanExport, ExportsWhatRemainsAfterTheStartWasDroppedAndSaysSo) {
  SessionLatents session = tiny_session();
  session.dropped_latent_frames = 6;  // two earlier blocks: live frames 0..20 are gone
  session.prompts = {{0, "a red fox"}, {17, "a blue whale"}, {29, "a green owl"}};
  EXPECT_EQ(session.first_kept_frame(), 21);  // latent frame 6 covers frames 21..24
  EXPECT_EQ(session.last_kept_frame(), 44);   // 12 latent frames in all: 1 + 4 * 11 frames
  const std::string gone = session.dropped_start_text();
  EXPECT_NE(gone.find("The first 1.3 s of this video are no longer kept"), std::string::npos)
      << gone;
  EXPECT_NE(gone.find("kept: frames 21..44 (1.3 s to 2.8 s)"), std::string::npos) << gone;
  const std::vector<PromptMark> marks = session.kept_prompts();
  ASSERT_EQ(marks.size(), 2u);
  EXPECT_EQ(marks[0].frame, 0);  // in effect at the kept start
  EXPECT_EQ(marks[0].text, "a blue whale");
  EXPECT_EQ(marks[1].frame, 8);
  EXPECT_EQ(marks[1].text, "a green owl");
  EXPECT_TRUE(tiny_session().dropped_start_text().empty());

  const auto path = temp_dir("wan_dropped") / "wan.mp4";
  std::vector<std::string> stages;
  ASSERT_TRUE(ui::export_session_wan(
      session, options_for(path), on_cpu(), [](int64_t, int64_t) { return true; },
      [&](const std::string& s) { stages.push_back(s); }));
  EXPECT_TRUE(std::any_of(stages.begin(), stages.end(), [&](const std::string& s) {
    return s == gone;
  })) << "the export says the start is gone";
  const DecodedVideo video = read_video(path, true);
  EXPECT_EQ(video.frames, 21);  // the kept 6 latent frames, decoded as a video of their own
  ASSERT_EQ(video.chapters.size(), 2u);
  EXPECT_EQ(video.chapters[0].title, "a blue whale");
  EXPECT_EQ(video.chapters[1].title, "a green owl");
  EXPECT_NEAR(video.chapters[1].start_s, 8.0 / 16, 1e-3);
}

TEST(WanExport, DecodesEveryLatentFrameWithTheWanVae) {
  const SessionLatents session = tiny_session();
  EXPECT_EQ(session.latent_frames(), 6);
  EXPECT_EQ(session.video_frames(), 21);
  const auto path = temp_dir("wan") / "wan.mp4";
  std::vector<std::string> stages;
  int64_t last_done = -1, last_total = -1, calls = 0;
  ASSERT_TRUE(ui::export_session_wan(
      session, options_for(path), on_cpu(),
      [&](int64_t done, int64_t total) {
        EXPECT_GE(done, last_done);
        last_done = done;
        last_total = total;
        ++calls;
        return true;
      },
      [&](const std::string& s) { stages.push_back(s); }));
  EXPECT_EQ(last_done, 21);
  EXPECT_EQ(last_total, 21);
  EXPECT_EQ(calls, 22);  // once before the first frame, then per frame
  ASSERT_GE(stages.size(), 2u);
  EXPECT_NE(stages.front().find("tiny random Wan VAE"), std::string::npos) << stages.front();

  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, 21);
  EXPECT_EQ(video.width, 32);  // 4 latent pixels x the VAE's scale 8
  EXPECT_EQ(video.height, 32);
  ASSERT_EQ(video.chapters.size(), 2u);
  EXPECT_EQ(video.chapters[1].title, "a blue whale");
  EXPECT_NEAR(video.chapters[1].start_s, 9.0 / 16, 1e-3);

  // The pictures are the Wan VAE's: decode the same latents directly and compare each frame.
  WanVaeDecoderOptions d;
  d.device = at::kCPU;
  d.dtype = at::kFloat;
  // The tiny model's VAE: the tiny configuration with seed 0 (SessionFactory::export_decoder).
  WanVaeDecoder decoder(make_random_wan_vae_weights(WanVaeConfig::tiny(), 0, false), d);
  const at::Tensor reference =
      frames_to_rgba8(decoder.decode(at::cat(session.blocks, 1))).narrow(3, 0, 3);
  ASSERT_EQ(reference.size(0), 21);
  // Luma (full resolution in 4:2:0; the noise-like chroma of random weights is not).
  auto luma = [](const at::Tensor& rgb) {
    const at::Tensor x = rgb.to(at::kDouble);
    return 0.2126 * x.select(2, 0) + 0.7152 * x.select(2, 1) + 0.0722 * x.select(2, 2);
  };
  double worst = 0;
  for (int64_t i = 0; i < 21; ++i) {
    const double diff = (luma(video.rgb[i]) - luma(reference[i])).abs().mean().item<double>();
    worst = std::max(worst, diff);
  }
  EXPECT_LT(worst, 6.0) << "mean absolute luma difference per frame (H.264 at CRF 10)";
  // ... and the comparison has teeth: another frame's pixels are further away.
  const double other = (luma(video.rgb[3]) - luma(reference[17])).abs().mean().item<double>();
  std::cout << "luma difference: worst frame " << worst << ", frame 3 vs 17 " << other << "\n";
  EXPECT_GT(other, worst);
}

TEST(WanExport, CancelRemovesThePartialFile) {
  const auto path = temp_dir("wan") / "cancelled.mp4";
  EXPECT_FALSE(ui::export_session_wan(tiny_session(), options_for(path), on_cpu(),
                                      [](int64_t done, int64_t) { return done < 5; }));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".json"));
  // Cancelled before the first frame (while the VAE loaded): no file either.
  EXPECT_FALSE(ui::export_session_wan(tiny_session(), options_for(path), on_cpu(),
                                      [](int64_t, int64_t) { return false; }));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(WanExport, MissingVaeNoLatentsAndBadLatentsAreClearErrors) {
  const auto dir = temp_dir("wan");
  const auto models = dir / "models";
  std::filesystem::create_directories(models / "google");
  std::ofstream(models / "taew2_1.pth") << "x";
  SessionLatents session = tiny_session();
  session.model = {.tiny_random = false, .folder = models, .device = {}};
  const auto path = dir / "out.mp4";
  try {
    ui::export_session_wan(session, options_for(path), on_cpu(), {});
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(models.string()), std::string::npos) << what;
    EXPECT_NE(what.find("Wan2.1_VAE.pth"), std::string::npos) << what;
  }
  EXPECT_FALSE(std::filesystem::exists(path));

  try {
    ui::export_session_wan(SessionLatents{}, options_for(path), on_cpu(), {});
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no latents"), std::string::npos) << e.what();
  }

  SessionLatents wrong = tiny_session();
  wrong.blocks = {at::randn({1, 3, 8, 4, 4})};
  try {
    ui::export_session_wan(wrong, options_for(path), on_cpu(), {});
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 3, 8, 4, 4]"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));

  // An unwritable output: IoError naming it, after the decoder was built.
  const auto unwritable = dir / "missing-folder" / "out.mp4";
  try {
    ui::export_session_wan(tiny_session(), options_for(unwritable), on_cpu(), {});
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(unwritable.string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
