// Live video out: streams read back with libavformat (UDP and SRT on localhost, FLV/MPEG-TS to a
// file URL), the virtual camera's writer against a FIFO, dropped frames, and the errors a user
// sees (no v4l2loopback device, a bad URL, a refused connection).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/recorder.h"
#include "longlive/video_out.h"

namespace longlive::test {
namespace {

constexpr int kWidth = 96;
constexpr int kHeight = 64;

at::Tensor frame(int index) {
  const at::Tensor x = at::arange(kWidth, at::kFloat).view({1, kWidth}).expand({kHeight, kWidth});
  const at::Tensor y = at::arange(kHeight, at::kFloat).view({kHeight, 1}).expand({kHeight, kWidth});
  const at::Tensor r = 127.5 + 110 * at::sin(x * 0.09 + index * 0.3);
  const at::Tensor g = 127.5 + 110 * at::cos(y * 0.11 - index * 0.3);
  return at::stack({r, g, at::full_like(r, 90), at::full_like(r, 255)}, 2)
      .round()
      .to(at::kByte)
      .contiguous();
}

StreamOutputOptions stream_options(const std::string& url) {
  StreamOutputOptions o;
  o.url = url;
  o.width = kWidth;
  o.height = kHeight;
  o.codec = "libx264";
  o.bitrate_kbps = 500;
  o.queue_frames = 64;  // the tests push faster than real time and want every frame
  return o;
}

// A free UDP/TCP port on localhost (bound and released; fine for a test).
int free_port() {
  static int next = 20000 + static_cast<int>(::getpid() % 20000);
  return next++;
}

std::filesystem::path temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("longlive-vo-{}", ::getpid());
  std::filesystem::create_directories(dir);
  return dir / name;
}

// `paced`: at 16 fps, then a pause before closing (SRT's live mode delivers by timestamp and
// drops what is unsent at close).
void send_frames(VideoOutput& out, int count, bool paced = false) {
  for (int i = 0; i < count; ++i) {
    EXPECT_TRUE(out.push(frame(i))) << "frame " << i;
    if (paced) std::this_thread::sleep_for(std::chrono::milliseconds(1000 / 16));
  }
  if (paced) std::this_thread::sleep_for(std::chrono::milliseconds(800));
  out.close();
  EXPECT_EQ(out.stats().frames_sent, count);
  EXPECT_EQ(out.stats().frames_dropped, 0);
}

TEST(VideoOut, FlvAndMpegtsToAFileUrlReadBack) {
  for (const std::string container : {"flv", "mpegts"}) {
    const auto path = temp_path("out." + container);
    auto o = stream_options("file:" + path.string());
    o.container = container;
    auto out = VideoOutput::stream(o);
    EXPECT_EQ(out->codec_name(), "libx264");
    send_frames(*out, 24);
    const DecodedVideo video = read_video(path, false);
    EXPECT_EQ(video.frames, 24) << container;
    EXPECT_EQ(video.width, kWidth);
    EXPECT_EQ(video.height, kHeight);
    EXPECT_EQ(video.codec, "h264");
    EXPECT_GT(out->stats().bytes_sent, 0);
  }
}

TEST(VideoOut, ContainerFollowsTheUrl) {
  EXPECT_EQ(stream_container_for("rtmp://example.org/live/key"), "flv");
  EXPECT_EQ(stream_container_for("rtmps://example.org/live/key"), "flv");
  EXPECT_EQ(stream_container_for("srt://example.org:9000"), "mpegts");
  EXPECT_EQ(stream_container_for("udp://127.0.0.1:1234"), "mpegts");
}

// A receiver on localhost: libavformat listens (UDP bind / SRT listener) on a thread while the
// output sends; every frame comes back at the stream's size.
void round_trip(const std::string& send_url, const std::string& listen_url, bool paced) {
  DecodedVideo received;
  std::string reader_error;
  std::thread reader([&] {
    try {
      received = read_video(listen_url, false);
    } catch (const std::exception& e) {
      reader_error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the receiver binds first
  {
    auto out = VideoOutput::stream(stream_options(send_url));
    send_frames(*out, 32, paced);
  }
  reader.join();
  ASSERT_TRUE(reader_error.empty()) << reader_error;
  EXPECT_EQ(received.frames, 32);
  EXPECT_EQ(received.width, kWidth);
  EXPECT_EQ(received.height, kHeight);
}

TEST(VideoOut, UdpMpegtsReachesALocalReceiver) {
  const int port = free_port();
  // The receiver stops 1.5 s after the last packet (timeout in µs).
  round_trip(fmt::format("udp://127.0.0.1:{}?pkt_size=1316", port),
             fmt::format("udp://127.0.0.1:{}?timeout=1500000", port), false);
}

TEST(VideoOut, SrtReachesALocalListener) {
  const int port = free_port();
  round_trip(fmt::format("srt://127.0.0.1:{}", port),
             fmt::format("srt://127.0.0.1:{}?mode=listener&timeout=5000000", port), true);
}

TEST(VideoOut, BadUrlsNameTheUrl) {
  try {
    VideoOutput::stream(stream_options("nosuchproto://example.org/live"));
    FAIL() << "no error for an unknown protocol";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nosuchproto://example.org/live"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot open the URL"), std::string::npos) << e.what();
  }
  // Nothing listens on port 1: the RTMP connect is refused at once.
  try {
    VideoOutput::stream(stream_options("rtmp://127.0.0.1:1/live/key"));
    FAIL() << "no error for a refused connection";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("rtmp://127.0.0.1:1/live/key"), std::string::npos)
        << e.what();
  }
  auto odd = stream_options("udp://127.0.0.1:9");
  odd.width = 95;
  EXPECT_THROW(VideoOutput::stream(odd), ConfigError);
}

TEST(VideoOut, MissingCameraDeviceSaysHowToLoadV4l2loopback) {
  VirtualCameraOptions o;
  o.device = "/dev/video_longlive_test_77";
  o.width = kWidth;
  o.height = kHeight;
  try {
    VideoOutput::virtual_camera(o);
    FAIL() << "no error for a missing device";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("/dev/video_longlive_test_77"), std::string::npos) << m;
    EXPECT_NE(m.find("no such device"), std::string::npos) << m;
    EXPECT_NE(m.find("modprobe v4l2loopback"), std::string::npos) << m;
    EXPECT_NE(m.find("video_nr=77"), std::string::npos) << m;
  }
  o.device = temp_path("plain-file").string();
  { std::ofstream(o.device) << "x"; }
  EXPECT_THROW(VideoOutput::virtual_camera(o), ConfigError);
}

// The camera writer against a FIFO standing in for the loopback device: raw I420 frames of
// width*height*3/2 bytes, in order; and a reader that stops reading makes the output drop
// frames, never block the producer.
TEST(VideoOut, VirtualCameraWritesI420FramesAndDropsInsteadOfBlocking) {
  const auto fifo = temp_path("camera.fifo");
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  VirtualCameraOptions o;
  o.device = fifo.string();
  o.width = kWidth;
  o.height = kHeight;
  o.queue_frames = 2;
  auto out = VideoOutput::virtual_camera(o);
  const size_t frame_bytes = static_cast<size_t>(kWidth) * kHeight * 3 / 2;

  // Nobody reads: the pipe (64 KiB) fills after a few frames, the output thread blocks in
  // write(), the queue fills and pushes drop the oldest, each returning at once.
  const int pushes = 200;
  std::vector<at::Tensor> frames;
  for (int i = 0; i < 8; ++i) frames.push_back(frame(i));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < pushes; ++i) out->push(frames[i % 8]);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto stats = out->stats();
  EXPECT_EQ(stats.frames_pushed, pushes);
  EXPECT_GT(stats.frames_dropped, pushes / 2);
  EXPECT_LT(ms, 5000.0) << "push() blocked on the output";

  // Read everything so the output drains and closes.
  std::vector<uint8_t> bytes;
  std::atomic<bool> closed{false};
  std::thread drain([&] {
    std::vector<uint8_t> chunk(1 << 16);
    for (;;) {
      const ssize_t n = ::read(reader, chunk.data(), chunk.size());
      if (n > 0) {
        bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + n);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        break;
      } else if (closed) {
        break;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  });
  out->close();  // the writer end is closed: the drain reads what is left, then EOF
  const auto final_stats = out->stats();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  closed = true;
  drain.join();
  ::close(reader);
  EXPECT_EQ(final_stats.frames_sent + final_stats.frames_dropped, pushes);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(final_stats.frames_sent) * frame_bytes);
  // The first frame's luma is the pattern's (BT.709 limited range, so within [16, 235]).
  ASSERT_GE(bytes.size(), frame_bytes);
  EXPECT_GE(*std::min_element(bytes.begin(), bytes.begin() + kWidth * kHeight), 16);
  EXPECT_LE(*std::max_element(bytes.begin(), bytes.begin() + kWidth * kHeight), 235);
}

// --- LiveOutputs: outputs switched while frames flow (the studio's Output menu, OSC) ---

at::Tensor plain_frame(int width, int height, int value) {
  at::Tensor f = at::full({height, width, 4}, value, at::kByte);
  f.select(2, 3).fill_(255);
  return f;
}

// Each size opens its own file (the opener picks the path), so a reopen can be read back.
LiveOutputs::StreamOpener file_per_size(const std::string& name, std::atomic<int>* opens) {
  return [name, opens](StreamOutputOptions o) {
    ++*opens;
    o.url = "file:" + temp_path(fmt::format("{}-{}x{}.ts", name, o.width, o.height)).string();
    o.codec = "libx264";
    o.queue_frames = 64;
    return VideoOutput::stream(o);
  };
}

TEST(LiveOutputs, OpensAtTheFrameSizeAndReopensWhenItChanges) {
  std::atomic<int> opens{0};
  LiveOutputs outputs(file_per_size("resize", &opens));
  outputs.push(plain_frame(kWidth, kHeight, 10));  // off: nothing happens
  EXPECT_EQ(opens, 0);
  StreamOutputOptions o;
  o.url = "file:unused";  // the opener decides
  outputs.enable_stream(o);
  EXPECT_EQ(outputs.status(LiveOutputs::Kind::stream).target, "file:unused");
  outputs.push(plain_frame(kWidth, kHeight, 20));  // opens at this size; this frame is dropped
  outputs.wait_idle();
  ASSERT_TRUE(outputs.status(LiveOutputs::Kind::stream).open);
  for (int i = 0; i < 10; ++i) outputs.push(plain_frame(kWidth, kHeight, 30 + i));
  // A new resolution: the first frame at it closes the old file and opens a new one.
  outputs.push(plain_frame(kWidth * 2, kHeight, 50));
  outputs.wait_idle();
  for (int i = 0; i < 5; ++i) outputs.push(plain_frame(kWidth * 2, kHeight, 60 + i));
  outputs.disable(LiveOutputs::Kind::stream);
  outputs.wait_idle();
  EXPECT_EQ(opens, 2);
  const LiveOutputs::Status s = outputs.status(LiveOutputs::Kind::stream);
  EXPECT_FALSE(s.enabled);
  EXPECT_FALSE(s.open);
  EXPECT_FALSE(s.error) << *s.error;
  EXPECT_EQ(s.stats.frames_sent, 5);     // the last output's
  EXPECT_EQ(s.stats.frames_dropped, 2);  // one frame at each opening
  const DecodedVideo first =
      read_video(temp_path(fmt::format("resize-{}x{}.ts", kWidth, kHeight)), false);
  EXPECT_EQ(first.frames, 10);
  EXPECT_EQ(first.width, kWidth);
  const DecodedVideo second =
      read_video(temp_path(fmt::format("resize-{}x{}.ts", kWidth * 2, kHeight)), false);
  EXPECT_EQ(second.frames, 5);
  EXPECT_EQ(second.width, kWidth * 2);
}

TEST(LiveOutputs, AFailedOpenIsReportedOnceAndStaysOffUntilEnabledAgain) {
  LiveOutputs outputs;
  VirtualCameraOptions o;
  o.device = "/dev/video_longlive_test_78";
  outputs.enable_virtual_camera(o);
  outputs.push(plain_frame(kWidth, kHeight, 1));
  outputs.wait_idle();
  LiveOutputs::Status s = outputs.status(LiveOutputs::Kind::virtual_camera);
  EXPECT_TRUE(s.enabled);
  EXPECT_FALSE(s.open);
  ASSERT_TRUE(s.error);
  EXPECT_NE(s.error->find("/dev/video_longlive_test_78"), std::string::npos) << *s.error;
  EXPECT_NE(s.error->find("modprobe v4l2loopback"), std::string::npos) << *s.error;
  EXPECT_NE(outputs.summary().find("camera /dev/video_longlive_test_78: failed"), std::string::npos)
      << outputs.summary();
  // No retry per frame: the failure stays until the user switches it on again.
  for (int i = 0; i < 5; ++i) outputs.push(plain_frame(kWidth, kHeight, 1));
  outputs.wait_idle();
  EXPECT_EQ(outputs.status(LiveOutputs::Kind::virtual_camera).stats.frames_dropped, 1);
  outputs.enable_virtual_camera(o);
  EXPECT_FALSE(outputs.status(LiveOutputs::Kind::virtual_camera).error);
}

TEST(LiveOutputs, SwitchedOffWhileOpeningTheLateOutputIsClosedNotUsed) {
  std::atomic<int> opens{0};
  std::atomic<bool> release{false};
  auto slow = [&, inner = file_per_size("late", &opens)](StreamOutputOptions o) {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return inner(o);
  };
  LiveOutputs outputs(slow);
  outputs.enable_stream({});
  outputs.push(plain_frame(kWidth, kHeight, 1));  // the open starts, and waits
  outputs.disable(LiveOutputs::Kind::stream);
  release = true;
  outputs.wait_idle();
  EXPECT_EQ(opens, 1);
  const LiveOutputs::Status s = outputs.status(LiveOutputs::Kind::stream);
  EXPECT_FALSE(s.open);
  EXPECT_FALSE(s.enabled);
  outputs.push(plain_frame(kWidth, kHeight, 2));  // off: no new open
  outputs.wait_idle();
  EXPECT_EQ(opens, 1);
  EXPECT_EQ(outputs.summary(), "");
}

}  // namespace
}  // namespace longlive::test
