// The studio's recording without Qt or a display: LiveRecorder and SessionFrames fed as the
// engine thread feeds them, export_session, and every file they write decoded back.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "fixtures.h"
#include "live_recording.h"
#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive::test {
namespace {

using ui::LiveRecorder;
using ui::SessionFrames;

constexpr int kHeight = 48;
constexpr int kWidth = 64;

// A value handed from a helper thread (the recorder's opener or finisher) to the test.
template <class T>
class Handoff {
 public:
  // Notifies under the lock: the waiter may return and destroy this object as soon as it sees
  // the value, so the setter must be done with the condition variable by then (ThreadSanitizer
  // caught notify_all racing the destructor when it came after the unlock).
  void set(T value) {
    std::lock_guard lock(mutex_);
    value_ = std::move(value);
    ready_.notify_all();
  }
  std::optional<T> wait(int timeout_ms = 60000) {
    std::unique_lock lock(mutex_);
    ready_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [&] { return value_.has_value(); });
    return value_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::optional<T> value_;
};

// A flat grey frame whose level says which frame it is (survives H.264 within a few codes).
at::Tensor grey_frame(int64_t n, int height = kHeight, int width = kWidth) {
  at::Tensor f = at::full({height, width, 4}, 20 + 5 * n, at::kByte);
  f.select(2, 3).fill_(255);
  return f;
}

// A frame whose number is stored exactly in its first pixel (R = low byte, G = high byte).
at::Tensor numbered_frame(int64_t n, int height = 8, int width = 8) {
  at::Tensor f = at::zeros({height, width, 4}, at::kByte);
  f.select(2, 0).fill_(n % 256);
  f.select(2, 1).fill_(n / 256);
  return f;
}

int64_t frame_number(const at::Tensor& f) {
  return f[0][0][0].item<uint8_t>() + 256 * int64_t{f[0][0][1].item<uint8_t>()};
}

EngineFrame engine_frame(at::Tensor rgba, int64_t index, std::string prompt) {
  EngineFrame f;
  f.rgba = std::move(rgba);
  f.index = index;
  f.prompt = std::move(prompt);
  return f;
}

RecorderOptions options_for(const std::filesystem::path& path) {
  RecorderOptions o;
  o.path = path;
  o.width = kWidth;
  o.height = kHeight;
  o.codec = "libx264";
  o.queue_frames = 4;  // small: pushes meet back-pressure
  return o;
}

// Opens a recording and waits until frames are accepted; fails the test on an error.
void open(LiveRecorder& live, const RecorderOptions& o) {
  Handoff<std::optional<std::string>> opened;
  live.start(o, [&](const std::optional<std::string>& error) { opened.set(error); });
  const auto result = opened.wait();
  ASSERT_TRUE(result.has_value()) << "the recording never opened";
  ASSERT_FALSE(result->has_value()) << **result;
  ASSERT_TRUE(live.active());
  ASSERT_FALSE(live.opening());
}

LiveRecorder::Outcome stop(LiveRecorder& live) {
  Handoff<LiveRecorder::Outcome> done;
  live.stop([&](const LiveRecorder::Outcome& o) { done.set(o); });
  const auto outcome = done.wait();
  EXPECT_TRUE(outcome.has_value()) << "stop() never reported";
  return outcome.value_or(LiveRecorder::Outcome{});
}

double mean_level(const at::Tensor& rgb) { return rgb.to(at::kDouble).mean().item<double>(); }

TEST(LiveRecorder, RecordsEveryFrameInOrderWithPromptChapters) {
  const auto path = temp_dir("live") / "live.mp4";
  LiveRecorder live;
  ASSERT_NO_FATAL_FAILURE(open(live, options_for(path)));
  // The engine's worker thread delivers the frames: 24 of one prompt, 16 of the next.
  constexpr int64_t kFrames = 40;
  std::thread engine([&] {
    for (int64_t i = 0; i < kFrames; ++i)
      live.on_frame(engine_frame(grey_frame(i), i, i < 24 ? "a red fox" : "a blue whale"));
  });
  engine.join();
  EXPECT_EQ(live.frames_pushed(), kFrames);
  EXPECT_FALSE(live.error().has_value());
  const LiveRecorder::Outcome outcome = stop(live);
  EXPECT_FALSE(outcome.error.has_value()) << *outcome.error;
  EXPECT_FALSE(outcome.removed);
  EXPECT_EQ(outcome.frames, kFrames);
  EXPECT_EQ(outcome.path, path);
  EXPECT_GT(outcome.bytes, 0);
  EXPECT_FALSE(live.active());

  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, kFrames);
  EXPECT_EQ(video.width, kWidth);
  EXPECT_EQ(video.height, kHeight);
  for (int64_t i = 0; i < kFrames; ++i) {
    EXPECT_NEAR(video.timestamps_s[i], static_cast<double>(i) / 16, 1e-6) << "frame " << i;
    // Frames arrive in order and unaltered: frame i has grey level 20 + 5 i.
    EXPECT_NEAR(mean_level(video.rgb[i]), 20.0 + 5.0 * static_cast<double>(i), 3.0) << i;
  }
  ASSERT_EQ(video.chapters.size(), 2u);
  EXPECT_EQ(video.chapters[0].title, "a red fox");
  EXPECT_EQ(video.chapters[1].title, "a blue whale");
  EXPECT_NEAR(video.chapters[1].start_s, 24.0 / 16, 1e-3);
}

TEST(LiveRecorder, NewResolutionStopsWithAClearErrorAndKeepsTheEarlierFrames) {
  const auto path = temp_dir("live") / "resize.mp4";
  LiveRecorder live;
  ASSERT_NO_FATAL_FAILURE(open(live, options_for(path)));
  for (int64_t i = 0; i < 10; ++i) live.on_frame(engine_frame(grey_frame(i), i, "a fox"));
  live.on_frame(engine_frame(grey_frame(10, 32, 32), 10, "a fox"));
  live.on_frame(engine_frame(grey_frame(11), 11, "a fox"));  // ignored after the error
  const auto error = live.error();
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("32x32"), std::string::npos) << *error;
  EXPECT_NE(error->find(path.string()), std::string::npos) << *error;
  EXPECT_EQ(live.frames_pushed(), 10);
  const LiveRecorder::Outcome outcome = stop(live);
  ASSERT_TRUE(outcome.error.has_value());
  EXPECT_EQ(outcome.frames, 10);
  EXPECT_EQ(read_video(path, false).frames, 10);
}

TEST(LiveRecorder, StopWithoutFramesLeavesNoFile) {
  const auto dir = temp_dir("live");
  {
    // Opened, then stopped before the first frame: reported, nothing kept.
    const auto path = dir / "empty.mp4";
    LiveRecorder live;
    ASSERT_NO_FATAL_FAILURE(open(live, options_for(path)));
    EXPECT_TRUE(std::filesystem::exists(path));  // the fragmented file exists while recording
    const LiveRecorder::Outcome outcome = stop(live);
    EXPECT_FALSE(outcome.error.has_value()) << *outcome.error;
    EXPECT_TRUE(outcome.removed);
    EXPECT_EQ(outcome.frames, 0);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(path.string() + ".json"));
    EXPECT_FALSE(live.active());
  }
  {
    // Stopped at once, usually while the file is still opening: `done` still comes, and after
    // it no file is left whichever thread won.
    const auto path = dir / "at-once.mp4";
    LiveRecorder live;
    std::atomic<int> opened_calls{0};
    live.start(options_for(path), [&](const std::optional<std::string>&) { ++opened_calls; });
    const LiveRecorder::Outcome outcome = stop(live);
    EXPECT_TRUE(outcome.removed);
    EXPECT_EQ(outcome.frames, 0);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(live.active());
    EXPECT_LE(opened_calls.load(), 1);
    // A new recording can start right away.
    ASSERT_NO_FATAL_FAILURE(open(live, options_for(dir / "again.mp4")));
    live.on_frame(engine_frame(grey_frame(0), 0, "a fox"));
    EXPECT_EQ(stop(live).frames, 1);
  }
  {
    LiveRecorder idle;
    bool called = false;
    idle.stop([&](const LiveRecorder::Outcome&) { called = true; });  // nothing to stop
    EXPECT_FALSE(called);
    idle.on_frame(engine_frame(grey_frame(0), 0, "a fox"));  // not recording: ignored
    EXPECT_EQ(idle.frames_pushed(), 0);
  }
}

TEST(LiveRecorder, UnwritableFolderIsReportedNamingThePath) {
  const auto dir = temp_dir("live");
  std::ofstream(dir / "a-file") << "x";
  const auto path = dir / "a-file" / "videos" / "rec.mp4";
  LiveRecorder live;
  Handoff<std::optional<std::string>> opened;
  live.start(options_for(path), [&](const std::optional<std::string>& e) { opened.set(e); });
  const auto result = opened.wait();
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->has_value()) << "expected an error";
  EXPECT_NE((*result)->find(path.string()), std::string::npos) << **result;
  EXPECT_FALSE(live.active());
}

// The session's copy of a frame (ui::plain_copy: one memcpy on the engine thread) owns compact
// bytes even of a strided view; SessionFrames.KeepsItsOwnCopyOfEachFrame covers the session.
TEST(SessionFrames, PlainCopyOfAStridedFrameIsCompactAndItsOwn) {
  const at::Tensor block = at::randint(0, 255, {3, 6, 5, 4}, at::TensorOptions().dtype(at::kByte));
  const at::Tensor strided = block.transpose(1, 2)[1];  // not contiguous
  const at::Tensor copy = ui::plain_copy(strided);
  EXPECT_TRUE(copy.is_contiguous());
  EXPECT_TRUE(copy.equal(strided));
  EXPECT_FALSE(copy.storage().is_alias_of(block.storage()));
  const at::Tensor before = copy.clone();
  block.fill_(7);
  EXPECT_TRUE(copy.equal(before));
}

TEST(SessionFrames, BudgetDropsTheOldestFramesCountsAndReportsThem) {
  const int64_t frame_bytes = 8 * 8 * 4;
  SessionFrames session(10 * frame_bytes);
  for (int64_t i = 0; i < 25; ++i)
    session.add(engine_frame(numbered_frame(i), i, i < 10 ? "a" : (i < 20 ? "b" : "c")));
  EXPECT_EQ(session.size(), 10);
  EXPECT_EQ(session.dropped(), 15);
  EXPECT_EQ(session.bytes(), 10 * frame_bytes);
  const SessionFrames::Snapshot s = session.snapshot();
  EXPECT_EQ(s.dropped, 15);
  ASSERT_EQ(s.frames.size(), 10u);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(frame_number(s.frames[i]), 15 + i) << "oldest first";
  // Prompt marks relative to the first kept frame: "b" was in effect there, "c" from frame 20.
  ASSERT_EQ(s.prompts.size(), 2u);
  EXPECT_EQ(s.prompts[0].frame, 0);
  EXPECT_EQ(s.prompts[0].text, "b");
  EXPECT_EQ(s.prompts[1].frame, 5);
  EXPECT_EQ(s.prompts[1].text, "c");

  // A smaller budget applies from the next frame; one frame is always kept.
  session.set_budget(frame_bytes / 2);
  session.add(engine_frame(numbered_frame(25), 25, "c"));
  EXPECT_EQ(session.size(), 1);
  EXPECT_EQ(session.dropped(), 25);
  EXPECT_EQ(frame_number(session.snapshot().frames.front()), 25);

  session.clear();
  EXPECT_EQ(session.size(), 0);
  EXPECT_EQ(session.dropped(), 0);
  EXPECT_EQ(session.bytes(), 0);
  EXPECT_TRUE(session.snapshot().prompts.empty());
}

TEST(SessionFrames, VideoPromptsStartAtTheEnginesLastRestart) {
  SessionFrames session(12 * 8 * 8 * 4);  // keeps 12 frames
  // Frames 0-19 of a first video (prompt a, then b from 10); a new start restarts the video
  // (engine index 0 again) under b, and c follows 5 frames later.
  for (int64_t i = 0; i < 20; ++i)
    session.add(engine_frame(numbered_frame(i), i, i < 10 ? "a" : "b"));
  ASSERT_EQ(session.video_prompts().size(), 2u);  // still the first video: a at 0, b at 10
  EXPECT_EQ(session.video_prompts()[1].frame, 10);
  for (int64_t i = 0; i < 8; ++i)
    session.add(engine_frame(numbered_frame(20 + i), i, i < 5 ? "b" : "c"));
  const std::vector<PromptMark> marks = session.video_prompts();
  ASSERT_EQ(marks.size(), 2u);
  EXPECT_EQ(marks[0].frame, 0);
  EXPECT_EQ(marks[0].text, "b");
  EXPECT_EQ(marks[1].frame, 5);
  EXPECT_EQ(marks[1].text, "c");
  EXPECT_EQ(session.dropped(), 16);  // the budget does not change the video's marks
  session.clear();
  EXPECT_TRUE(session.video_prompts().empty());
}

// The studio shows frames from the GPU and has the engine copy them to the host only while it
// records: the frames without a host copy are counted, not kept, and the marks follow the kept
// frames (gaps included) while the video's marks (the Wan VAE chapters) count every frame.
TEST(SessionFrames, FramesWithoutAHostCopyAreCountedNotKept) {
  SessionFrames session(int64_t{1} << 20);
  auto gpu_only = [](int64_t index, std::string prompt) {
    return engine_frame(at::Tensor(), index, std::move(prompt));
  };
  for (int64_t i = 0; i < 10; ++i) session.add(gpu_only(i, i < 4 ? "a" : "b"));
  for (int64_t i = 10; i < 16; ++i) session.add(engine_frame(numbered_frame(i), i, "b"));
  for (int64_t i = 16; i < 20; ++i) session.add(gpu_only(i, i < 18 ? "b" : "c"));
  for (int64_t i = 20; i < 23; ++i) session.add(engine_frame(numbered_frame(i), i, "c"));
  EXPECT_EQ(session.size(), 9);
  EXPECT_EQ(session.not_copied(), 14);
  EXPECT_EQ(session.dropped(), 0);
  const SessionFrames::Snapshot s = session.snapshot();
  EXPECT_EQ(s.not_copied, 14);
  ASSERT_EQ(s.frames.size(), 9u);
  EXPECT_EQ(frame_number(s.frames[0]), 10);
  EXPECT_EQ(frame_number(s.frames[6]), 20);
  // "b" is in effect at the first kept frame; "c" began in the gap, so it marks kept frame 6.
  ASSERT_EQ(s.prompts.size(), 2u);
  EXPECT_EQ(s.prompts[0].frame, 0);
  EXPECT_EQ(s.prompts[0].text, "b");
  EXPECT_EQ(s.prompts[1].frame, 6);
  EXPECT_EQ(s.prompts[1].text, "c");
  const std::vector<PromptMark> video = session.video_prompts();
  ASSERT_EQ(video.size(), 3u);
  EXPECT_EQ(video[1].frame, 4);
  EXPECT_EQ(video[2].frame, 18);
  session.clear();
  EXPECT_EQ(session.not_copied(), 0);
}

TEST(LiveRecorder, FramesWithoutAHostCopyAreNotPushed) {
  const auto path = temp_dir("live-gpu-only") / "live.mp4";
  LiveRecorder live;
  ASSERT_NO_FATAL_FAILURE(open(live, options_for(path)));
  // The first block after Record may still come without host copies.
  for (int64_t i = 0; i < 3; ++i) live.on_frame(engine_frame(at::Tensor(), i, "a fox"));
  for (int64_t i = 3; i < 8; ++i) live.on_frame(engine_frame(grey_frame(i), i, "a fox"));
  EXPECT_EQ(live.frames_pushed(), 5);
  EXPECT_FALSE(live.error().has_value());
  const LiveRecorder::Outcome outcome = stop(live);
  EXPECT_FALSE(outcome.error.has_value()) << *outcome.error;
  EXPECT_EQ(read_video(path, false).frames, 5);
}

TEST(SessionFrames, KeepsItsOwnCopyOfEachFrame) {
  // The engine hands out views into a block's tensor, which it reuses.
  at::Tensor block = at::zeros({3, 8, 8, 4}, at::kByte);
  SessionFrames session(int64_t{1} << 20);
  for (int64_t i = 0; i < 3; ++i) {
    block[i].copy_(numbered_frame(i));
    session.add(engine_frame(block[i], i, "a"));
  }
  block.fill_(0xEE);
  const auto s = session.snapshot();
  ASSERT_EQ(s.frames.size(), 3u);
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(frame_number(s.frames[i]), i);
  EXPECT_EQ(session.bytes(), 3 * 8 * 8 * 4);  // compact copies, not the whole block each
}

TEST(SessionFrames, SnapshotsStayConsistentWhileFramesArrive) {
  const int64_t frame_bytes = 8 * 8 * 4;
  SessionFrames session(64 * frame_bytes);
  constexpr int64_t kFrames = 3000;
  std::atomic<bool> done{false}, reading{false};
  std::thread engine([&] {
    while (!reading) std::this_thread::yield();  // overlap with the reader for sure
    for (int64_t i = 0; i < kFrames; ++i)
      session.add(engine_frame(numbered_frame(i), i, "prompt " + std::to_string(i / 50)));
    done = true;
  });
  int64_t snapshots = 0, last_seen = -1;
  while (!done || snapshots == 0) {
    const SessionFrames::Snapshot s = session.snapshot();
    ++snapshots;
    reading = true;
    if (s.frames.empty()) continue;
    // Consecutive frames, starting right after the dropped ones, never going back in time.
    const int64_t first = frame_number(s.frames.front());
    ASSERT_EQ(first, s.dropped);
    for (size_t i = 0; i < s.frames.size(); ++i)
      ASSERT_EQ(frame_number(s.frames[i]), first + static_cast<int64_t>(i));
    ASSERT_LE(static_cast<int64_t>(s.frames.size()), 64);
    const int64_t newest = first + static_cast<int64_t>(s.frames.size()) - 1;
    ASSERT_GE(newest, last_seen);
    last_seen = newest;
    // Prompt marks: the first at frame 0, increasing, inside the snapshot, matching the frames.
    ASSERT_FALSE(s.prompts.empty());
    ASSERT_EQ(s.prompts.front().frame, 0);
    for (size_t p = 0; p < s.prompts.size(); ++p) {
      const int64_t at_frame = s.prompts[p].frame;
      ASSERT_LT(at_frame, static_cast<int64_t>(s.frames.size()));
      if (p > 0) {
        ASSERT_GT(at_frame, s.prompts[p - 1].frame);
      }
      const int64_t absolute = first + at_frame;
      ASSERT_EQ(s.prompts[p].text, "prompt " + std::to_string(absolute / 50)) << absolute;
    }
  }
  engine.join();
  EXPECT_GT(snapshots, 1);
  EXPECT_EQ(session.size() + session.dropped(), kFrames);
}

SessionFrames::Snapshot grey_snapshot(int64_t frames) {
  SessionFrames session(int64_t{1} << 30);
  for (int64_t i = 0; i < frames; ++i)
    session.add(engine_frame(grey_frame(i), i, i < 12 ? "a red fox" : "a blue whale"));
  return session.snapshot();
}

TEST(ExportSession, WritesEveryFrameWithChaptersAndReportsProgress) {
  const auto path = temp_dir("export") / "session.mp4";
  const SessionFrames::Snapshot snapshot = grey_snapshot(30);
  RecorderOptions o;
  o.path = path;
  o.codec = "libx264";
  std::vector<std::pair<int64_t, int64_t>> calls;
  EXPECT_TRUE(ui::export_session(snapshot, o, [&](int64_t done, int64_t total) {
    calls.emplace_back(done, total);
    return true;
  }));
  ASSERT_EQ(calls.size(), 30u);
  EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>{30, 30}));
  const DecodedVideo video = read_video(path, true);
  ASSERT_EQ(video.frames, 30);
  EXPECT_EQ(video.width, kWidth);  // taken from the frames
  EXPECT_EQ(video.height, kHeight);
  for (int64_t i = 0; i < 30; ++i)
    EXPECT_NEAR(mean_level(video.rgb[i]), 20.0 + 5.0 * static_cast<double>(i), 3.0) << i;
  ASSERT_EQ(video.chapters.size(), 2u);
  EXPECT_EQ(video.chapters[1].title, "a blue whale");
  EXPECT_NEAR(video.chapters[1].start_s, 12.0 / 16, 1e-3);
}

TEST(ExportSession, CancelRemovesThePartialFile) {
  const auto path = temp_dir("export") / "cancelled.mp4";
  RecorderOptions o;
  o.path = path;
  o.codec = "libx264";
  EXPECT_FALSE(
      ui::export_session(grey_snapshot(20), o, [](int64_t done, int64_t) { return done < 5; }));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".json"));
}

TEST(ExportSession, BadPathsAndEmptyOrResizedSessionsAreClearErrors) {
  const auto dir = temp_dir("export");
  std::ofstream(dir / "a-file") << "x";
  for (const auto& path : {dir / "missing-folder" / "out.mp4", dir / "a-file" / "out.mp4"}) {
    RecorderOptions o;
    o.path = path;
    o.codec = "libx264";
    try {
      ui::export_session(grey_snapshot(3), o, {});
      ADD_FAILURE() << "expected IoError for " << path;
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  RecorderOptions o;
  o.path = dir / "empty.mp4";
  o.codec = "libx264";
  try {
    ui::export_session(SessionFrames::Snapshot{}, o, {});
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(o.path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no frames"), std::string::npos) << e.what();
  }
  SessionFrames::Snapshot resized = grey_snapshot(4);
  resized.frames.push_back(grey_frame(4, 32, 32));
  o.path = dir / "resized.mp4";
  try {
    ui::export_session(resized, o, {});
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("frame 4 is 32x32"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(o.path)) << "a failed export leaves no partial file";
}

}  // namespace
}  // namespace longlive::test
