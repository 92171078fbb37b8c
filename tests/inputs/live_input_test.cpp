// Live control inputs (cameras and other FFmpeg input devices) through LiveVideoSource. There is
// no camera here: FFmpeg's lavfi input device stands in for one (testsrc2 draws a moving picture;
// its `realtime` filter paces it like a camera, without it frames come as fast as they decode).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine_support.h"
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

// A camera just picked: its first block takes the frames it has (at least one) and holds the
// latest for the rest instead of waiting for the camera to film 9 frames (over half a second on
// the 16 fps grid); the blocks after wait for theirs. has_frames tells the encoders whether the
// next block's frames are there to be read a block ahead.
// A block read in parts hands each part out once it is filmed, the capture going on meanwhile:
// a paced camera's first frames of a block reach the encoder while it films the last ones.
TEST(LiveInput, ABlockReadInPartsHandsEachPartOutOnceFilmed) {
  LiveVideoSource source(test_pattern("testsrc2=size=160x120:rate=30,realtime"), 48, 64);
  const at::Tensor before = source.next_frames(1);  // the input started
  const auto begin = std::chrono::steady_clock::now();
  std::vector<double> handed;  // seconds after `begin`
  std::vector<at::Tensor> parts;
  source.next_frames_in_parts(12, 4, [&](const at::Tensor& part) {
    handed.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
    parts.push_back(part.clone());
  });
  ASSERT_EQ(parts.size(), 3u);
  for (const at::Tensor& part : parts) EXPECT_EQ(part.sizes(), (at::IntArrayRef{4, 3, 48, 64}));
  // 8 frames of a 16 fps grid are 0.5 s of camera time between the first part and the last.
  EXPECT_GE(handed[2] - handed[0], 0.3);
  const LiveVideoSource::Stats stats = source.stats();
  EXPECT_EQ(stats.handed_out, 13);
  EXPECT_EQ(stats.repeated, 0);
  EXPECT_GT((parts[2][3] - before[0]).abs().max().item<float>(), 0.1f) << "a moving picture";
  EXPECT_THROW(source.next_frames_in_parts(4, 0, [](const at::Tensor&) {}), Error);
}

TEST(LiveInput, FirstFramesTakeWhatIsThereAndHoldTheLatest) {
  LiveVideoSource source(test_pattern("testsrc2=size=160x120:rate=30,realtime"), 48, 64);
  const auto begin = std::chrono::steady_clock::now();
  const at::Tensor first = source.first_frames(9);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(first.sizes(), (at::IntArrayRef{9, 3, 48, 64}));
  EXPECT_LT(seconds, 0.45) << "waited for the camera to film the first block";
  LiveVideoSource::Stats stats = source.stats();
  EXPECT_EQ(stats.handed_out, 9);
  EXPECT_GE(stats.repeated, 1);
  // The frames not filmed yet are the latest one held.
  EXPECT_TRUE(at::equal(first[8], first[9 - 1 - stats.repeated]));
  EXPECT_FALSE(source.has_frames(12)) << "12 frames filmed in no time";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(source.has_frames(12)) << "1.5 s of a 16 fps grid";
  EXPECT_EQ(source.next_frames(12).size(0), 12);
  stats = source.stats();
  EXPECT_EQ(stats.handed_out, 21);
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

// Latest frames win: a generator behind the camera (here: asking nothing for 2 s while 24
// frames queue up) gets the newest frames, the older ones dropped and counted, instead of
// conditioning on frames up to the queue's 1.5 s old.
TEST(LiveInput, AReadBehindTheCameraTakesTheNewestFrames) {
  LiveVideoSource source(test_pattern("testsrc2=size=160x120:rate=30,realtime"), 48, 64);
  source.next_frames(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const int64_t dropped_before = source.stats().dropped;
  EXPECT_EQ(source.next_frames(4).size(0), 4);
  const LiveVideoSource::Stats stats = source.stats();
  // ~32 frames filmed on the grid in 2 s, 24 queued at most: 4 taken, the other ~20 dropped.
  EXPECT_GE(stats.dropped - dropped_before, 12) << "took old frames from the queue";
  EXPECT_EQ(stats.handed_out, 5);
  EXPECT_FALSE(source.has_frames(4)) << "the queue was emptied of what was older";
}

TEST(LiveInput, AnInputThatStopsRepeatsItsLastFrame) {
  // Half a second of input: 8 frames on the 16 fps grid, then the input ends (and, with
  // reconnecting off, stays ended).
  LiveVideoOptions o = test_pattern("testsrc2=size=64x48:rate=30:duration=0.5");
  o.reconnect_s = 0;
  LiveVideoSource source(o, 32, 32);
  const at::Tensor frames = source.next_frames(12);
  const LiveVideoSource::Stats stats = source.stats();
  EXPECT_EQ(frames.size(0), 12);
  EXPECT_EQ(stats.on_grid, 8);
  EXPECT_EQ(stats.repeated, 4);
  EXPECT_TRUE(at::equal(frames[11], frames[7]));
  EXPECT_NE(stats.error.find("ended"), std::string::npos) << stats.error;
  // 64x48 into 32x32: a quarter of the width is cropped away, and the source says so.
  EXPECT_EQ(source.counts().framing, "64x48 cropped to 32x32: 26 % of its width not used");
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

// ---- Reconnecting ----
// A camera that goes away and comes back, without a camera: a FIFO the test writes a Y4M stream
// into (frames of one colour), then removes and closes (the capture sees the input end and cannot
// open it again), then a file of another colour put at the same path (it opens again).

// Y4M of `frames` frames of one colour (4:4:4, BT.601 limited range: y, cb, cr).
std::string y4m(int frames, uint8_t y, uint8_t cb, uint8_t cr) {
  constexpr int kW = 64, kH = 48;
  std::string s = fmt::format("YUV4MPEG2 W{} H{} F30:1 Ip A1:1 C444\n", kW, kH);
  for (int f = 0; f < frames; ++f) {
    s += "FRAME\n";
    s.append(kW * kH, static_cast<char>(y));
    s.append(kW * kH, static_cast<char>(cb));
    s.append(kW * kH, static_cast<char>(cr));
  }
  return s;
}
const std::string kRed = y4m(8, 81, 90, 240);
std::string blue(int frames) { return y4m(frames, 41, 240, 110); }

// Red more than blue (1), blue more than red (-1), in the mean of frame [3, H, W].
int hue(const at::Tensor& frame) {
  const float red = frame[0].mean().item<float>(), bluish = frame[2].mean().item<float>();
  return red > bluish + 0.5f ? 1 : bluish > red + 0.5f ? -1 : 0;
}

// The device end of a FIFO at `path`: writes `stream`, removes the path, closes (the input
// "unplugged"). Opening a FIFO for writing waits for its reader, the source's constructor.
class FifoCamera {
 public:
  FifoCamera(std::filesystem::path path, std::string stream) : path_(std::move(path)) {
    std::filesystem::remove(path_);
    if (mkfifo(path_.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path_.string());
    writer_ = std::thread([this, stream = std::move(stream)] {
      // A reader gone early gives EPIPE here, not a SIGPIPE that ends the test binary.
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      const int fd = open(path_.c_str(), O_WRONLY);
      if (fd < 0) return;
      for (size_t at = 0; at < stream.size();) {
        const ssize_t n = write(fd, stream.data() + at, stream.size() - at);
        if (n <= 0) break;
        at += static_cast<size_t>(n);
      }
      std::filesystem::remove(path_);
      close(fd);
      done_ = true;
    });
  }
  ~FifoCamera() {
    // A source that never opened (a failed test) leaves the writer waiting: read its end.
    if (!done_) {
      const int fd = open(path_.c_str(), O_RDONLY | O_NONBLOCK);
      char sink[4096];
      while (fd >= 0 && !done_) {
        if (read(fd, sink, sizeof sink) <= 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (fd >= 0) close(fd);
    }
    writer_.join();
    std::filesystem::remove(path_);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::atomic<bool> done_{false};
  std::thread writer_;
};

// A live source on a FIFO camera that plays red frames, then is unplugged.
struct UnpluggedCamera {
  FifoCamera camera;
  LiveVideoSource source;
  UnpluggedCamera(const char* name, double reconnect_s)
      : camera(std::filesystem::temp_directory_path() /
                   fmt::format("longlive-{}-{}.y4m", name, static_cast<long>(getpid())),
               kRed),
        source(options(camera.path(), reconnect_s), 32, 32) {}
  static LiveVideoOptions options(const std::filesystem::path& path, double reconnect_s) {
    LiveVideoOptions o;
    o.format = "yuv4mpegpipe";
    o.device = path.string();
    o.stall_s = 0.05;  // repeats come quickly: the test waits for the input, not for repeats
    o.reconnect_s = reconnect_s;
    return o;
  }
};

// The waits below give the capture thread 10 s (engine_support.h's wait_for).
constexpr int kWaitMs = 10000;

TEST(LiveInput, ALostInputIsReopenedAndItsFramesComeBack) {
  UnpluggedCamera unplugged("camera", 20);
  LiveVideoSource& source = unplugged.source;
  const std::string path = unplugged.camera.path().string();
  EXPECT_EQ(hue(source.next_frames(1)[0]), 1);
  // Unplugged: the source says it is reopening, holds the red picture, and has no error.
  ASSERT_TRUE(wait_for([&] { return !source.stats().interrupted.empty(); }, kWaitMs))
      << "no reconnect began; error: " << source.stats().error;
  EXPECT_NE(source.counts().interrupted.find(path), std::string::npos)
      << source.counts().interrupted;
  for (int i = 0; i < 12; ++i) EXPECT_EQ(hue(source.next_frames(1)[0]), 1);
  EXPECT_GT(source.stats().repeated, 0);
  EXPECT_TRUE(source.counts().error.empty()) << source.counts().error;
  // Plugged in again (another picture at the same path): its frames come, the note goes.
  {
    const std::string part = path + ".part";
    std::ofstream(part, std::ios::binary) << blue(16);
    std::filesystem::rename(part, path);
  }
  ASSERT_TRUE(wait_for([&] { return hue(source.next_frames(1)[0]) == -1; }, kWaitMs))
      << "the input did not come back: " << source.stats().error;
  const LiveVideoSource::Stats stats = source.stats();
  EXPECT_GE(stats.reconnects, 1);
  EXPECT_TRUE(stats.error.empty()) << stats.error;
  EXPECT_NEAR(stats.input_fps, 30.0, 1e-6);
}

TEST(LiveInput, ALostInputThatDoesNotComeBackFailsAfterItsReconnectTime) {
  UnpluggedCamera unplugged("camera-gone", 0.6);
  LiveVideoSource& source = unplugged.source;
  EXPECT_EQ(hue(source.next_frames(1)[0]), 1);
  ASSERT_TRUE(wait_for([&] { return !source.stats().error.empty(); }, kWaitMs));
  const std::string error = source.counts().error;
  // Why it was lost, that it was tried again, for how long, and the last reason, by name.
  EXPECT_NE(error.find(unplugged.camera.path().string()), std::string::npos) << error;
  EXPECT_NE(error.find("ended"), std::string::npos) << error;
  EXPECT_NE(error.find("did not come back in 0.6 s"), std::string::npos) << error;
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;
  EXPECT_TRUE(source.counts().interrupted.empty());
  // The stream still gets frames (the last picture) until the engine drops the input.
  EXPECT_EQ(hue(source.next_frames(2)[1]), 1);
  EXPECT_EQ(source.stats().reconnects, 0);
}

TEST(LiveInput, ANegativeReconnectTimeIsNamed) {
  LiveVideoOptions o = test_pattern("testsrc2=size=64x48:rate=30");
  o.reconnect_s = -1;
  try {
    LiveVideoSource source(o, 32, 32);
    FAIL() << "accepted a negative reconnect time";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("reconnect time -1"), std::string::npos) << e.what();
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

// A camera whose frames count up: frame i is all i (so each read's frames say which they were).
struct CountingCamera final : VaceFrameSource {
  int64_t next = 0;
  int64_t reads = 0;
  at::Tensor next_frames(int64_t count) override {
    ++reads;
    at::Tensor frames = at::arange(next, next + count, at::kFloat).view({count, 1, 1, 1});
    next += count;
    return frames.expand({count, 3, 2, 2}).contiguous();
  }
};

int64_t first_of(const at::Tensor& frames) { return frames[0][0][0][0].item<int64_t>(); }

// Two inputs on one camera see the same frames, each read of the camera going to both; a reader
// joins at the next read, takes the newest of a read larger than it asks, and the reads every
// reader has had are let go.
TEST(SharedFrames, EveryReaderGetsEveryReadFromItsJoiningOn) {
  auto camera = std::make_shared<CountingCamera>();
  auto shared = std::make_shared<SharedFrameSource>(camera);
  auto a = shared->reader();
  EXPECT_EQ(first_of(a->first_frames(9)), 0);  // frames 0..8
  auto b = shared->reader();                   // joins at the next read
  EXPECT_EQ(first_of(a->next_frames(12)), 9);  // 9..20, read from the camera
  EXPECT_TRUE(b->has_frames(9));               // held for b
  // b's first block asks for 9: the newest 9 of the shared 12 (12..20).
  EXPECT_EQ(first_of(b->first_frames(9)), 12);
  EXPECT_EQ(first_of(b->next_frames(12)), 21);  // b reads first this time: 21..32
  EXPECT_EQ(first_of(a->next_frames(12)), 21);  // a gets the same
  EXPECT_EQ(camera->reads, 3);
  // More than a shared read holds: the reader's own read.
  EXPECT_EQ(first_of(a->next_frames(4)), 33);
  EXPECT_EQ(first_of(b->next_frames(8)), 37);
  EXPECT_EQ(camera->reads, 5);
  // One reader gone: the other reads alone, and nothing is held for the one gone.
  a.reset();
  EXPECT_EQ(first_of(b->next_frames(12)), 45);
  EXPECT_EQ(first_of(b->next_frames(12)), 57);
  // The camera stays open while a reader lives.
  std::weak_ptr<CountingCamera> open = camera;
  camera.reset();
  shared.reset();
  EXPECT_FALSE(open.expired());
  b.reset();
  EXPECT_TRUE(open.expired());
}

// A block read in parts (a paced camera's block encoded as it is filmed) takes the same frames
// as a whole read: shared whole with a reader reading it whole, and handed out in parts from a
// read another reader made.
TEST(SharedFrames, AReadInPartsIsSharedAsTheWholeRead) {
  auto camera = std::make_shared<CountingCamera>();
  auto shared = std::make_shared<SharedFrameSource>(camera);
  auto a = shared->reader(), b = shared->reader();
  auto read_in_parts = [](VaceFrameSource& reader) {
    std::vector<int64_t> firsts;
    reader.next_frames_in_parts(12, 4, [&](const at::Tensor& part) {
      EXPECT_EQ(part.size(0), 4);
      firsts.push_back(first_of(part));
    });
    return firsts;
  };
  EXPECT_EQ(read_in_parts(*a), (std::vector<int64_t>{0, 4, 8}));  // from the camera
  const at::Tensor whole = b->next_frames(12);                    // the same, kept for b
  EXPECT_EQ(first_of(whole), 0);
  EXPECT_EQ(whole[11][0][0][0].item<int64_t>(), 11);
  EXPECT_EQ(first_of(a->next_frames(12)), 12);
  EXPECT_EQ(read_in_parts(*b), (std::vector<int64_t>{12, 16, 20}));  // a's read, in parts
  EXPECT_EQ(camera->reads, 2);
  // Alone, a reader's parts come from the camera and nothing is kept for the one gone.
  a.reset();
  EXPECT_EQ(read_in_parts(*b), (std::vector<int64_t>{24, 28, 32}));
  auto c = shared->reader();  // joins at the next read
  EXPECT_EQ(first_of(b->next_frames(12)), 36);
  EXPECT_EQ(read_in_parts(*c), (std::vector<int64_t>{36, 40, 44}));
  EXPECT_EQ(camera->reads, 4);
}

}  // namespace
}  // namespace longlive::test
