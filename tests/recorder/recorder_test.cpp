// MP4 recording: round trip through libavformat, crash safety, errors naming the path.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <thread>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive::test {
namespace {

constexpr int kWidth = 96;
constexpr int kHeight = 64;

// A smooth pattern that moves every frame, RGBA8.
at::Tensor pattern(int index) {
  const at::Tensor y = at::arange(kHeight, at::kFloat).view({kHeight, 1}).expand({kHeight, kWidth});
  const at::Tensor x = at::arange(kWidth, at::kFloat).view({1, kWidth}).expand({kHeight, kWidth});
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
  o.codec = "libx264";
  return o;
}

TEST(Recorder, RoundTripFrameCountTimestampsAndPsnr) {
  const auto path = temp_dir("rec") / "pattern.mp4";
  constexpr int kFrames = 40;
  {
    auto o = options_for(path);
    o.queue_frames = 4;  // force back-pressure: push must wait, never drop
    o.metadata = {{"comment", "seed 7, preset balanced"}};
    Recorder rec(o);
    for (int i = 0; i < kFrames; ++i) rec.push(pattern(i));
    rec.finish();
    EXPECT_EQ(rec.frames_written(), kFrames);
    EXPECT_GT(rec.bytes_written(), 0);
  }
  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, kFrames);
  EXPECT_EQ(video.width, kWidth);
  EXPECT_EQ(video.codec, "h264");
  for (int i = 0; i < kFrames; ++i) EXPECT_NEAR(video.timestamps_s[i], i / 16.0, 1e-6) << i;
  double mse = 0;
  for (int i = 0; i < kFrames; ++i) {
    const at::Tensor src = pattern(i).narrow(2, 0, 3).to(at::kDouble);
    mse += (video.rgb[i].to(at::kDouble) - src).pow(2).mean().item<double>();
  }
  const double psnr = 10 * std::log10(255.0 * 255.0 / (mse / kFrames));
  std::printf("[ PSNR     ] %.2f dB over %d frames (libx264 CRF 18)\n", psnr, kFrames);
  EXPECT_GE(psnr, 35.0);
}

TEST(Recorder, MissingFolderAndOddSizeAreClearErrors) {
  try {
    Recorder rec(options_for("/nonexistent/folder/out.mp4"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/folder/out.mp4"), std::string::npos)
        << e.what();
  }
  auto o = options_for(temp_dir("rec") / "odd.mp4");
  o.width = 95;
  try {
    Recorder rec(o);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("95x64"), std::string::npos) << e.what();
  }
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

TEST(Recorder, KilledMidStreamLeavesAPlayableFile) {
  const auto path = temp_dir("rec") / "killed.mp4";
  const int status = run_child("RecordThenDie", path.string());
  ASSERT_TRUE(WIFSIGNALED(status)) << "child did not die by signal, status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  const DecodedVideo video = read_video(path, false);
  // 40 frames were encoded with a keyframe every 16: the first two fragments are complete.
  EXPECT_GE(video.frames, 32);
  std::printf("[ KILLED   ] %lld frames readable of 40 encoded\n",
              static_cast<long long>(video.frames));
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
  Recorder rec(options_for(path));
  for (int i = 0; i < 40; ++i) rec.push(pattern(i));
  while (rec.frames_written() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  raise(SIGKILL);
}

TEST(RecorderChild, RecordIntoTinyFileLimit) {
  const char* path = std::getenv("LONGLIVE_RECORDER_CHILD");
  if (!path) GTEST_SKIP() << "runs only as the child of DiskFullIsReportedWithThePath";
  signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of killing us
  rlimit limit{8 * 1024, 8 * 1024};
  setrlimit(RLIMIT_FSIZE, &limit);
  try {
    Recorder rec(options_for(path));
    for (int i = 0; i < 400; ++i) rec.push(pattern(i));
    rec.finish();
  } catch (const IoError& e) {
    if (std::string(e.what()).find(path) != std::string::npos) _exit(0);
    std::fprintf(stderr, "IoError without the path: %s\n", e.what());
    _exit(2);
  }
  _exit(3);  // no error although the file could not grow
}

}  // namespace
}  // namespace longlive::test
