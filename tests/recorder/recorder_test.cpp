// MP4 recording: round trip through libavformat, crash safety, errors naming the path,
// back-pressure, metadata (tags, chapters, sidecar), export.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

extern "C" {
#include <libswscale/swscale.h>
}

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive::test {
namespace {

constexpr int kWidth = 96;
constexpr int kHeight = 64;
constexpr int kFps = 16;

// A smooth pattern that moves every frame, RGBA8 [h, w, 4].
at::Tensor pattern(int index, int height = kHeight, int width = kWidth) {
  const at::Tensor y = at::arange(height, at::kFloat).view({height, 1}).expand({height, width});
  const at::Tensor x = at::arange(width, at::kFloat).view({1, width}).expand({height, width});
  const double t = index * 0.35;
  const at::Tensor r = 127.5 + 110 * at::sin(x * 0.09 + t);
  const at::Tensor g = 127.5 + 110 * at::cos(y * 0.11 - t);
  const at::Tensor b = 127.5 + 100 * at::sin((x + y) * 0.05 + 2 * t);
  return at::stack({r, g, b, at::full_like(r, 255)}, 2).round().to(at::kByte).contiguous();
}

RecorderOptions options_for(const std::filesystem::path& path) {
  RecorderOptions o;
  o.path = path;
  o.width = kWidth;
  o.height = kHeight;
  o.fps = kFps;
  o.codec = "libx264";
  return o;
}

// PSNR of decoded RGB frames against the RGBA sources, over all frames.
double psnr(const DecodedVideo& video, const std::vector<at::Tensor>& sources) {
  double mse = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    const at::Tensor src = sources[i].narrow(2, 0, 3).to(at::kDouble);
    mse += (video.rgb[i].to(at::kDouble) - src).pow(2).mean().item<double>();
  }
  return 10 * std::log10(255.0 * 255.0 / (mse / static_cast<double>(sources.size())));
}

void expect_frame_times(const DecodedVideo& video, int64_t frames) {
  ASSERT_EQ(static_cast<int64_t>(video.timestamps_s.size()), frames);
  for (int64_t i = 0; i < frames; ++i)
    EXPECT_NEAR(video.timestamps_s[i], static_cast<double>(i) / kFps, 1e-6) << "frame " << i;
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

TEST(Recorder, RoundTripFrameCountTimestampsPsnrAndMetadata) {
  const auto path = temp_dir("rec") / "pattern.mp4";
  constexpr int kFrames = 40;
  std::vector<at::Tensor> sources;
  for (int i = 0; i < kFrames; ++i) sources.push_back(pattern(i));
  {
    auto o = options_for(path);
    o.queue_frames = 4;  // force back-pressure: push must wait, never drop
    o.model = "Wan2.1-T2V-1.3B + LongLive LoRA";
    o.preset = "balanced";
    o.seed = 7;
    Recorder rec(o);
    rec.mark_prompt("a red fox in the snow", 0);
    for (int i = 0; i < kFrames; ++i) {
      if (i == 24) rec.mark_prompt("the fox jumps", 24);
      rec.push(sources[i]);
    }
    rec.finish();
    EXPECT_EQ(rec.frames_written(), kFrames);
    EXPECT_GT(rec.bytes_written(), 0);
    EXPECT_EQ(rec.codec_name(), "libx264");
  }
  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, kFrames);
  EXPECT_EQ(video.width, kWidth);
  EXPECT_EQ(video.height, kHeight);
  EXPECT_EQ(video.codec, "h264");
  EXPECT_FALSE(video.fragmented) << "a clean stop finalises into a faststart MP4";
  expect_frame_times(video, kFrames);
  const double db = psnr(video, sources);
  std::printf("[ PSNR     ] %.2f dB over %d frames (libx264 CRF 18, %dx%d)\n", db, kFrames, kWidth,
              kHeight);
  EXPECT_GE(db, 35.0);

  // Tags: session line and the prompts as JSON; chapters: one per prompt, at their frames.
  ASSERT_TRUE(video.metadata.count("comment"));
  EXPECT_NE(video.metadata.at("comment").find("seed 7"), std::string::npos);
  EXPECT_NE(video.metadata.at("comment").find("preset balanced"), std::string::npos);
  EXPECT_NE(video.metadata.at("comment").find("Wan2.1-T2V-1.3B"), std::string::npos);
  EXPECT_EQ(video.metadata.at("title"), "a red fox in the snow");
  ASSERT_TRUE(video.metadata.count("description"));
  EXPECT_EQ(nlohmann::json::parse(video.metadata.at("description"))["prompts"][1]["frame"], 24);
  ASSERT_EQ(video.chapters.size(), 2u);
  EXPECT_EQ(video.chapters[0].title, "a red fox in the snow");
  EXPECT_NEAR(video.chapters[0].start_s, 0.0, 1e-3);
  EXPECT_EQ(video.chapters[1].title, "the fox jumps");
  EXPECT_NEAR(video.chapters[1].start_s, 24.0 / kFps, 1e-3);
  EXPECT_NEAR(video.chapters[1].end_s, double(kFrames) / kFps, 1e-3);

  const nlohmann::json side = read_json(path.string() + ".json");
  EXPECT_EQ(side["seed"], 7);
  EXPECT_EQ(side["preset"], "balanced");
  EXPECT_EQ(side["frames"], kFrames);
  EXPECT_EQ(side["complete"], true);
  ASSERT_EQ(side["prompts"].size(), 2u);
  EXPECT_EQ(side["prompts"][1]["text"], "the fox jumps");
  EXPECT_DOUBLE_EQ(side["prompts"][1]["start_s"].get<double>(), 24.0 / kFps);
}

// The ATen conversion (used for CUDA frames) against swscale, an independent implementation
// of the same BT.709 limited-range matrix.
TEST(Recorder, TensorI420MatchesSwscale) {
  const at::Tensor rgba = pattern(5);
  const at::Tensor i420 = rgba_to_i420(rgba);
  ASSERT_EQ(i420.numel(), kWidth * kHeight * 3 / 2);
  SwsContext* sws =
      sws_getContext(kWidth, kHeight, AV_PIX_FMT_RGBA, kWidth, kHeight, AV_PIX_FMT_YUV420P,
                     SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr);
  ASSERT_NE(sws, nullptr);
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(sws, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
  at::Tensor expected = at::empty({kWidth * kHeight * 3 / 2}, at::kByte);
  uint8_t* y = expected.data_ptr<uint8_t>();
  uint8_t* dst[3] = {y, y + kWidth * kHeight, y + kWidth * kHeight * 5 / 4};
  const int dst_stride[3] = {kWidth, kWidth / 2, kWidth / 2};
  const uint8_t* src[1] = {rgba.data_ptr<uint8_t>()};
  const int src_stride[1] = {kWidth * 4};
  sws_scale(sws, src, src_stride, 0, kHeight, dst, dst_stride);
  sws_freeContext(sws);
  const at::Tensor diff = (i420.to(at::kInt) - expected.to(at::kInt)).abs();
  const at::Tensor luma = diff.narrow(0, 0, kWidth * kHeight);
  const at::Tensor chroma = diff.narrow(0, kWidth * kHeight, kWidth * kHeight / 2);
  std::printf("[ I420     ] vs swscale: luma max %d, chroma max %d mean %.3f\n",
              luma.max().item<int>(), chroma.max().item<int>(),
              chroma.to(at::kFloat).mean().item<float>());
  EXPECT_LE(luma.max().item<int>(), 1);
  // Chroma filters differ (2x2 box here, bicubic in swscale): a smooth image stays close.
  EXPECT_LE(chroma.max().item<int>(), 2);
  EXPECT_LT(chroma.to(at::kFloat).mean().item<float>(), 0.5);
  EXPECT_THROW(rgba_to_i420(at::zeros({3, 4, 4}, at::kByte)), ConfigError);
}

TEST(Recorder, TensorConversionPathRoundTrips) {
  const auto path = temp_dir("rec") / "tensor.mp4";
  constexpr int kFrames = 20;
  std::vector<at::Tensor> sources;
  auto o = options_for(path);
  o.conversion = ColorConversion::tensor;  // the CUDA-frame path, here on the CPU
  {
    Recorder rec(o);
    for (int i = 0; i < kFrames; ++i) {
      sources.push_back(pattern(i));
      rec.push(sources.back());
    }
    rec.finish();
  }
  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, kFrames);
  expect_frame_times(video, kFrames);
  const double db = psnr(video, sources);
  std::printf("[ PSNR     ] %.2f dB (ATen I420 path)\n", db);
  EXPECT_GE(db, 35.0);
}

TEST(Recorder, FragmentedWhenFaststartIsOff) {
  const auto path = temp_dir("rec") / "fragmented.mp4";
  constexpr int kFrames = 20;
  auto o = options_for(path);
  o.faststart = false;
  o.write_sidecar = false;
  {
    Recorder rec(o);
    for (int i = 0; i < kFrames; ++i) rec.push(pattern(i));
    rec.finish();
  }
  const DecodedVideo video = read_video(path, false);
  EXPECT_TRUE(video.fragmented);
  EXPECT_EQ(video.frames, kFrames);
  expect_frame_times(video, kFrames);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".json"));
}

TEST(Recorder, RawRowsWithStrideAndFrameIndices) {
  const auto path = temp_dir("rec") / "raw.mp4";
  constexpr int kFrames = 12;
  constexpr int kPad = 4 * 8;  // rows padded past width * 4, as a GL readback may be
  std::vector<at::Tensor> sources;
  {
    Recorder rec(options_for(path));
    std::vector<uint8_t> buffer(static_cast<size_t>(kHeight) * (kWidth * 4 + kPad), 0xAB);
    for (int i = 0; i < kFrames; ++i) {
      sources.push_back(pattern(i));
      for (int y = 0; y < kHeight; ++y)
        std::memcpy(buffer.data() + y * (kWidth * 4 + kPad), sources[i][y].data_ptr<uint8_t>(),
                    kWidth * 4);
      rec.push(buffer.data(), kWidth * 4 + kPad, 100 + i);  // indices need not start at 0
    }
    EXPECT_THROW(rec.push(buffer.data(), kWidth * 4, 100), ConfigError);  // not increasing
    EXPECT_THROW(rec.push(buffer.data(), kWidth * 2, 200), ConfigError);  // stride too small
    rec.finish();
  }
  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, kFrames);
  expect_frame_times(video, kFrames);
  EXPECT_GE(psnr(video, sources), 35.0);
}

TEST(Recorder, FrameIndexGapKeepsExactTimestamps) {
  const auto path = temp_dir("rec") / "gap.mp4";
  const std::vector<int64_t> indices = {0, 1, 2, 5, 6};  // frames 3 and 4 never arrived
  {
    Recorder rec(options_for(path));
    for (const int64_t i : indices) {
      const at::Tensor frame = pattern(static_cast<int>(i));
      rec.push(frame.data_ptr<uint8_t>(), kWidth * 4, i);
    }
    rec.finish();
  }
  const DecodedVideo video = read_video(path, false);
  ASSERT_EQ(video.frames, static_cast<int64_t>(indices.size()));
  for (size_t k = 0; k < indices.size(); ++k)
    EXPECT_NEAR(video.timestamps_s[k], static_cast<double>(indices[k]) / kFps, 1e-6) << k;
}

TEST(Recorder, FailedFinalisationKeepsTheFragmentedRecording) {
  const auto path = temp_dir("rec") / "keep.mp4";
  // A folder where the faststart copy would go makes the remux fail.
  std::filesystem::create_directories(path.string() + ".faststart.mp4");
  constexpr int kFrames = 20;
  {
    Recorder rec(options_for(path));
    rec.mark_prompt("still here", 0);
    for (int i = 0; i < kFrames; ++i) rec.push(pattern(i));
    EXPECT_NO_THROW(rec.finish());
    EXPECT_FALSE(rec.error());
  }
  const DecodedVideo video = read_video(path, false);
  EXPECT_TRUE(video.fragmented);
  EXPECT_EQ(video.frames, kFrames);
  expect_frame_times(video, kFrames);
  EXPECT_EQ(read_json(path.string() + ".json")["complete"], true);
  EXPECT_TRUE(std::filesystem::is_directory(path.string() + ".faststart.mp4"))
      << "only a file the recorder wrote may be removed";
}

TEST(Recorder, BackPressureNeverDropsAndProgressReportsEveryFrame) {
  const auto path = temp_dir("rec") / "slow.mp4";
  constexpr int kFrames = 24;
  constexpr int kQueue = 2;
  std::atomic<int64_t> calls = 0, last_written = 0, max_queued = 0;
  auto o = options_for(path);
  o.queue_frames = kQueue;
  o.on_progress = [&](const RecorderProgress& p) {
    ++calls;
    last_written = p.frames_written;
    max_queued = std::max<int64_t>(max_queued, p.frames_queued);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a slow encoder
  };
  Recorder rec(o);
  for (int i = 0; i < kFrames; ++i) {
    rec.push(pattern(i));
    EXPECT_LE(rec.progress().frames_queued, kQueue);
  }
  rec.finish();
  EXPECT_EQ(calls, kFrames);
  EXPECT_EQ(last_written, kFrames);
  EXPECT_LE(max_queued, kQueue);
  EXPECT_EQ(read_video(path, false).frames, kFrames);
}

// What slows the producer is reported: the encoder is held after its first frame until a
// releaser thread, once it sees the queue full behind it, lets it go 200 ms later, so the push
// that found the queue full waited about that long; the encoder's own time per frame does not
// count the hold (it is in the progress callback).
TEST(Recorder, ReportsTheProducersWaitAndTheEncodersTimePerFrame) {
  const auto path = temp_dir("rec") / "held.mp4";
  constexpr int kFrames = 8;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto o = options_for(path);
  o.queue_frames = 2;
  o.on_progress = [released](const RecorderProgress&) { released.wait(); };
  Recorder rec(o);
  std::thread releaser([&] {
    for (;;) {  // the first frame encoded and held, two more queued: the next push waits
      const RecorderProgress now = rec.progress();
      if (now.frames_written == 1 && now.frames_queued == 2) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    release.set_value();
  });
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kFrames; ++i) rec.push(pattern(i));
  const double pushing_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  releaser.join();
  rec.finish();
  const RecorderProgress p = rec.progress();
  EXPECT_EQ(p.frames_written, kFrames);
  EXPECT_GT(p.push_wait_ms_max, 50) << "pushing took " << pushing_ms << " ms";
  EXPECT_LE(p.push_wait_ms_max, p.push_wait_ms_total);
  EXPECT_LE(p.push_wait_ms_total, pushing_ms + 1);
  EXPECT_GT(p.encode_ms_mean, 0);
  EXPECT_GE(p.encode_ms_max, p.encode_ms_mean);
  EXPECT_LT(p.encode_ms_max, 250) << "the hold in the callback is not encoding time";
}

TEST(Recorder, CancelKeepsWhatWasEncodedAndStopsAtOnce) {
  const auto path = temp_dir("rec") / "cancel.mp4";
  auto o = options_for(path);
  o.queue_frames = 64;
  std::atomic<bool> slow = true;
  o.on_progress = [&](const RecorderProgress&) {
    if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  Recorder rec(o);
  for (int i = 0; i < 60; ++i) rec.push(pattern(i));
  rec.cancel();
  const int64_t written = rec.frames_written();
  EXPECT_LT(written, 60) << "queued frames are discarded";
  EXPECT_THROW(rec.push(pattern(0)), Error);
  const DecodedVideo video = read_video(path, false);
  EXPECT_EQ(video.frames, written);
  EXPECT_TRUE(video.fragmented);
}

TEST(Recorder, ExportsFloatFramesAndCancelsOnRequest) {
  const auto dir = temp_dir("rec");
  constexpr int kFrames = 10;
  std::vector<at::Tensor> sources;
  for (int i = 0; i < kFrames; ++i) sources.push_back(pattern(i, 48, 80));
  // [N, 3, H, W] float in [0, 1], as the VAE decoders return.
  const at::Tensor floats =
      at::stack(sources).narrow(3, 0, 3).permute({0, 3, 1, 2}).to(at::kFloat).div(255);
  RecorderOptions o;
  o.path = dir / "export.mp4";
  o.codec = "libx264";
  int64_t last = 0;
  EXPECT_TRUE(record_frames_to_mp4(floats, o, {{0, "a prompt"}}, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, kFrames);
    last = done;
    return true;
  }));
  EXPECT_EQ(last, kFrames);
  const DecodedVideo video = read_video(o.path, true);
  EXPECT_EQ(video.width, 80);
  EXPECT_EQ(video.height, 48);
  ASSERT_EQ(video.frames, kFrames);
  EXPECT_GE(psnr(video, sources), 35.0);
  ASSERT_EQ(video.chapters.size(), 1u);

  o.path = dir / "cancelled.mp4";
  EXPECT_FALSE(record_frames_to_mp4(floats, o, {}, [](int64_t done, int64_t) { return done < 3; }));
  EXPECT_FALSE(std::filesystem::exists(o.path));
  EXPECT_FALSE(std::filesystem::exists(o.path.string() + ".json"));

  EXPECT_THROW(frames_to_rgba8(at::zeros({2, 5, 8, 8})), ConfigError);
}

TEST(Recorder, MissingFolderUnwritablePathAndOddSizeAreClearErrors) {
  try {
    Recorder rec(options_for("/nonexistent/folder/out.mp4"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/folder/out.mp4"), std::string::npos)
        << e.what();
  }
  // Unwritable: a read-only folder (root ignores permission bits, and /proc refuses everyone).
  std::filesystem::path locked = temp_dir("rec") / "locked";
  std::filesystem::create_directories(locked);
  std::filesystem::permissions(
      locked, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  if (geteuid() == 0) locked = "/proc";
  const auto unwritable = locked / "out.mp4";
  try {
    Recorder rec(options_for(unwritable));
    FAIL() << "recording into " << unwritable << " did not fail";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(unwritable.string()), std::string::npos) << e.what();
  }
  auto o = options_for(temp_dir("rec") / "odd.mp4");
  o.width = 95;
  try {
    Recorder rec(o);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("95x64"), std::string::npos) << e.what();
  }
  o = options_for(temp_dir("rec") / "codec.mp4");
  o.codec = "vp9";
  EXPECT_THROW(Recorder{o}, ConfigError);
  Recorder rec(options_for(temp_dir("rec") / "shape.mp4"));
  EXPECT_THROW(rec.push(at::zeros({10, 10, 4}, at::kByte)), ConfigError);
}

// Runs `test` in a child process (this binary re-executed with a gtest filter); returns the
// child's wait status.
int run_child(const std::string& test, const std::string& path) {
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("LONGLIVE_RECORDER_CHILD", path.c_str(), 1);
    const std::string filter = "--gtest_filter=RecorderChild." + test;
    execl("/proc/self/exe", "test_recorder", filter.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

constexpr int kKilledFrames = 40;
constexpr int kGop = 16;

TEST(Recorder, KilledMidStreamLeavesAPlayableFile) {
  const auto path = temp_dir("rec") / "killed.mp4";
  const int status = run_child("RecordThenDie", path.string());
  ASSERT_TRUE(WIFSIGNALED(status)) << "child did not die by signal, status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  const DecodedVideo video = read_video(path, false);
  // Every fragment closed by a later keyframe is on disk.
  const int complete = (kKilledFrames - 1) / kGop * kGop;
  EXPECT_GE(video.frames, complete);
  EXPECT_TRUE(video.fragmented);
  for (int64_t i = 0; i < video.frames; ++i)
    EXPECT_NEAR(video.timestamps_s[i], static_cast<double>(i) / kFps, 1e-6);
  std::printf("[ KILLED   ] %lld frames readable of %d encoded (%d in closed fragments)\n",
              static_cast<long long>(video.frames), kKilledFrames, complete);
  // The sidecar written at the prompt change survives too.
  const nlohmann::json side = read_json(path.string() + ".json");
  EXPECT_EQ(side["complete"], false);
  EXPECT_EQ(side["prompts"][0]["text"], "before the crash");
}

TEST(Recorder, DiskFullIsReportedWithThePath) {
  const auto path = temp_dir("rec") / "full.mp4";
  const int status = run_child("RecordIntoTinyFileLimit", path.string());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child did not get an IoError naming the path";
}

TEST(RecorderChild, RecordThenDie) {
  const char* path = std::getenv("LONGLIVE_RECORDER_CHILD");
  if (!path) GTEST_SKIP() << "runs only as the child of KilledMidStreamLeavesAPlayableFile";
  auto o = options_for(path);
  o.gop_frames = kGop;
  Recorder rec(o);
  rec.mark_prompt("before the crash", 0);
  for (int i = 0; i < kKilledFrames; ++i) rec.push(pattern(i));
  while (rec.frames_written() < kKilledFrames)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  raise(SIGKILL);
}

TEST(RecorderChild, RecordIntoTinyFileLimit) {
  const char* path = std::getenv("LONGLIVE_RECORDER_CHILD");
  if (!path) GTEST_SKIP() << "runs only as the child of DiskFullIsReportedWithThePath";
  signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of killing us
  rlimit limit{8 * 1024, 8 * 1024};
  setrlimit(RLIMIT_FSIZE, &limit);
  std::vector<at::Tensor> kept;  // the session's frames stay with the caller
  try {
    Recorder rec(options_for(path));
    for (int i = 0; i < 400; ++i) {
      kept.push_back(pattern(i));
      rec.push(kept.back());
    }
    rec.finish();
  } catch (const IoError& e) {
    if (std::string(e.what()).find(path) == std::string::npos) {
      std::fprintf(stderr, "IoError without the path: %s\n", e.what());
      _exit(2);
    }
    if (kept.empty() || !kept.back().defined()) _exit(4);
    _exit(0);
  }
  _exit(3);  // no error although the file could not grow
}

}  // namespace
}  // namespace longlive::test

namespace longlive {
namespace {
TEST(LiveEncoderThreads, HalfTheCoresFromOneToEight) {
  EXPECT_EQ(live_encoder_threads(0u), 1);  // unknown core count
  EXPECT_EQ(live_encoder_threads(2u), 1);
  EXPECT_EQ(live_encoder_threads(8u), 4);
  EXPECT_EQ(live_encoder_threads(16u), 8);
  EXPECT_EQ(live_encoder_threads(128u), 8);
  EXPECT_GE(live_encoder_threads(), 1);
}
}  // namespace
}  // namespace longlive
