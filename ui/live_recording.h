#pragma once
// The studio's side of recording, without Qt: LiveRecorder feeds the engine's frames to one
// Recorder while the user records; SessionFrames keeps the frames of the session in memory so
// they can be exported afterwards (also after a failed recording). Both are fed on the engine's
// worker thread, in frame order, and read from the UI thread.
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "longlive/engine.h"
#include "longlive/recorder.h"

namespace longlive::ui {

class LiveRecorder {
 public:
  // Result of a finished recording, handed to the done callback on the finishing thread.
  struct Outcome {
    std::filesystem::path path;
    int64_t frames = 0;
    int64_t bytes = 0;
    std::optional<std::string> error;
    // Nothing was recorded (stopped while the file was opening, or before the first frame): the
    // file and its sidecar were removed again.
    bool removed = false;
  };

  LiveRecorder() = default;
  ~LiveRecorder();  // finishes a running recording and waits for finishing threads
  LiveRecorder(const LiveRecorder&) = delete;
  LiveRecorder& operator=(const LiveRecorder&) = delete;

  // UI thread, never blocks: opens the file on a helper thread (probing the encoder can take a
  // few hundred ms) and calls `opened` there with the error (IoError naming the path, ConfigError
  // for an odd size or unknown codec) or nullopt; frames are recorded from then on. A stop()
  // before the file is open removes it again (and `opened` is not called).
  void start(RecorderOptions options,
             std::function<void(const std::optional<std::string>& error)> opened);
  // Engine thread, every frame in order. Blocks while the recorder's queue is full (the
  // generator slows down, no frame is dropped). Never throws: a failure is kept in error().
  void on_frame(const EngineFrame& frame);
  // UI thread, never blocks: detaches the recording; a helper thread waits for a frame still
  // being pushed, encodes the queue, finalises the file and calls `done` (on that thread). A
  // recording without frames leaves no file (Outcome::removed). Does nothing when not active.
  void stop(std::function<void(const Outcome&)> done);

  bool active() const;  // opening or recording
  bool opening() const;
  // The running recording's progress, frames pushed and first error (recorder or frame size).
  RecorderProgress progress() const;
  int64_t frames_pushed() const;
  std::optional<std::string> error() const;
  std::filesystem::path path() const;

 private:
  // A file being opened on a helper thread; stop() meanwhile marks it cancelled and hands it the
  // done callback, so the opener removes the file and reports.
  struct Opening {
    bool cancelled = false;
    std::function<void(const Outcome&)> done;
  };

  mutable std::mutex state_mutex_;  // guards the fields below (and the Opening they point to)
  std::shared_ptr<Recorder> recorder_;
  std::shared_ptr<Opening> opening_;
  std::filesystem::path path_;
  int width_ = 0, height_ = 0;
  int64_t pushed_ = 0;
  std::string last_prompt_;
  std::optional<std::string> error_;
  // Held by on_frame() around push(): stop()'s helper takes it once so that no push is still
  // running on the recorder it finishes.
  std::mutex push_mutex_;
  std::vector<std::thread> finishers_;
};

// The session's frames (RGBA8 [H, W, 4], CPU) and prompt marks, up to a memory budget: when it
// is exceeded the oldest frames are dropped (and counted), so a long session cannot exhaust RAM.
// Only frames with a host copy are kept: a frame shown from the GPU alone (the studio turns the
// engine's host copies off unless it records, streams or uploads from the host) is counted as
// not copied, and its prompt marks still count (video_prompts, the Wan VAE re-decode's chapters).
// A compact host copy of one frame by a single memcpy on the calling thread (SessionFrames::add
// runs on the engine thread, where ATen's multi-threaded copy stalled generation).
at::Tensor plain_copy(const at::Tensor& frame);

class SessionFrames {
 public:
  explicit SessionFrames(int64_t budget_bytes) : budget_(budget_bytes) {}

  void clear();                        // UI thread: a new video starts
  void add(const EngineFrame& frame);  // engine thread
  void set_budget(int64_t budget_bytes);

  struct Snapshot {
    std::vector<at::Tensor> frames;   // shared with the store (tensors are not copied)
    std::vector<PromptMark> prompts;  // frame numbers relative to frames[0]
    int64_t dropped = 0;              // older frames dropped for the budget
    int64_t not_copied = 0;           // frames of the session never copied to the host
  };
  Snapshot snapshot() const;
  // Prompt marks of the current video (frames since the engine last started one, frame index 0:
  // a start or a preset change), relative to its first frame; dropped frames count too. The
  // chapters of a re-decode of the engine's session latents.
  std::vector<PromptMark> video_prompts() const;
  int64_t size() const;
  int64_t bytes() const;
  int64_t dropped() const;
  int64_t not_copied() const;  // frames seen without a host copy (not kept)

 private:
  mutable std::mutex mutex_;
  int64_t budget_;
  std::deque<at::Tensor> frames_;
  std::deque<int64_t> absolute_;     // each kept frame's absolute number
  std::vector<PromptMark> prompts_;  // absolute frame numbers (dropped frames included)
  int64_t seen_ = 0;                 // frames added since clear(), kept or not
  int64_t bytes_ = 0;
  int64_t dropped_ = 0;
  int64_t not_copied_ = 0;
  int64_t video_start_ = 0;  // absolute frame number of the current video's first frame
  std::string last_prompt_;
};

// Cancels the recorder and removes its file and sidecar (an export or recording that must leave
// nothing behind).
void discard_recording(Recorder& recorder);

// Writes a snapshot to an MP4 (export dialog). `progress(done, total)` returns false to cancel:
// then the partial file and its sidecar are removed and false is returned. Throws IoError /
// ConfigError like Recorder.
bool export_session(const SessionFrames::Snapshot& snapshot, RecorderOptions options,
                    const std::function<bool(int64_t, int64_t)>& progress);

}  // namespace longlive::ui
