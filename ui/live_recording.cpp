#include "live_recording.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive::ui {

LiveRecorder::~LiveRecorder() {
  if (active()) stop({});
  for (auto& t : finishers_) t.join();
}

// Also what a recording that recorded nothing leaves behind: nothing.
void discard_recording(Recorder& recorder) {
  recorder.cancel();
  std::error_code ec;
  std::filesystem::remove(recorder.path(), ec);
  std::filesystem::remove(recorder.sidecar_path(), ec);
}

void LiveRecorder::start(RecorderOptions options,
                         std::function<void(const std::optional<std::string>&)> opened) {
  auto opening = std::make_shared<Opening>();
  {
    std::lock_guard lock(state_mutex_);
    if (recorder_ || opening_) throw ConfigError("a recording is already running");
    opening_ = opening;
    path_ = options.path;
    width_ = options.width;
    height_ = options.height;
    pushed_ = 0;
    last_prompt_.clear();
    error_.reset();
  }
  finishers_.emplace_back([this, options = std::move(options), opened = std::move(opened),
                           opening = std::move(opening)] {
    std::optional<std::string> error;
    std::shared_ptr<Recorder> recorder;
    try {
      recorder = std::make_shared<Recorder>(options);  // throws naming the path
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::function<void(const Outcome&)> cancelled_done;
    {
      std::lock_guard lock(state_mutex_);
      if (opening->cancelled) {
        cancelled_done = std::move(opening->done);
      } else {
        opening_.reset();
        recorder_ = recorder;
      }
    }
    if (!opening->cancelled) {
      if (opened) opened(error);
      return;
    }
    // Stopped while opening: leave no empty file behind, then report like any stop.
    Outcome outcome{options.path, 0, 0, error, true};
    if (recorder) discard_recording(*recorder);
    if (cancelled_done) cancelled_done(outcome);
  });
}

void LiveRecorder::on_frame(const EngineFrame& frame) {
  std::lock_guard push_lock(push_mutex_);
  std::shared_ptr<Recorder> recorder;
  int64_t index = 0;
  bool new_prompt = false;
  {
    std::lock_guard lock(state_mutex_);
    // A frame without a host copy (the engine turns them on when the recording starts; the
    // first block after may still be without) is not pushed: the recording starts after it.
    if (!recorder_ || error_ || !frame.rgba.defined()) return;
    if (frame.rgba.size(0) != height_ || frame.rgba.size(1) != width_) {
      error_ = fmt::format(
          "recording to '{}' stopped: the video changed size to {}x{} (recording is {}x{}); "
          "start a new recording for the new resolution",
          path_.string(), frame.rgba.size(0), frame.rgba.size(1), height_, width_);
      return;
    }
    recorder = recorder_;
    index = pushed_;
    new_prompt = frame.prompt != last_prompt_;
    last_prompt_ = frame.prompt;
  }
  try {
    if (new_prompt) recorder->mark_prompt(frame.prompt, index);
    recorder->push(frame.rgba);
    std::lock_guard lock(state_mutex_);
    ++pushed_;
  } catch (const std::exception& e) {
    std::lock_guard lock(state_mutex_);
    if (!error_) error_ = e.what();
  }
}

void LiveRecorder::stop(std::function<void(const Outcome&)> done) {
  std::shared_ptr<Recorder> recorder;
  Outcome outcome;
  {
    std::lock_guard lock(state_mutex_);
    if (opening_) {  // the opener sees the flag, removes its file and calls `done`
      opening_->cancelled = true;
      opening_->done = std::move(done);
      opening_.reset();
      return;
    }
    recorder = std::move(recorder_);
    recorder_.reset();
    outcome.path = path_;
    outcome.error = error_;
  }
  if (!recorder) return;
  finishers_.emplace_back(
      [this, recorder = std::move(recorder), outcome, done = std::move(done)]() mutable {
        // A push that read the recorder before stop() detached it may still run: wait for it.
        { std::lock_guard barrier(push_mutex_); }
        try {
          // Also after a frame-size error: the frames queued before it are still recorded. A
          // failed writer throws here; the fragmented file keeps what was written.
          recorder->finish();
        } catch (const std::exception& e) {
          if (!outcome.error) outcome.error = e.what();
        }
        outcome.frames = recorder->frames_written();
        outcome.bytes = recorder->bytes_written();
        if (outcome.frames == 0) {  // an MP4 without frames plays nowhere: keep nothing
          discard_recording(*recorder);
          outcome.removed = true;
          outcome.bytes = 0;
        }
        if (outcome.error)
          log::error("recording: {}", *outcome.error);
        else if (outcome.removed)
          log::info("recording to {} stopped before its first frame: nothing kept",
                    outcome.path.string());
        else
          log::info("recorded {} frames to {}", outcome.frames, outcome.path.string());
        recorder.reset();  // closes the file before `done` looks at it
        if (done) done(outcome);
      });
}

bool LiveRecorder::active() const {
  std::lock_guard lock(state_mutex_);
  return recorder_ != nullptr || opening_ != nullptr;
}

bool LiveRecorder::opening() const {
  std::lock_guard lock(state_mutex_);
  return opening_ != nullptr;
}

RecorderProgress LiveRecorder::progress() const {
  std::lock_guard lock(state_mutex_);
  return recorder_ ? recorder_->progress() : RecorderProgress{};
}

int64_t LiveRecorder::frames_pushed() const {
  std::lock_guard lock(state_mutex_);
  return pushed_;
}

std::optional<std::string> LiveRecorder::error() const {
  std::lock_guard lock(state_mutex_);
  if (error_) return error_;
  return recorder_ ? recorder_->error() : std::nullopt;
}

std::filesystem::path LiveRecorder::path() const {
  std::lock_guard lock(state_mutex_);
  return path_;
}

void SessionFrames::clear() {
  std::lock_guard lock(mutex_);
  frames_.clear();
  absolute_.clear();
  prompts_.clear();
  seen_ = 0;
  bytes_ = 0;
  dropped_ = 0;
  not_copied_ = 0;
  video_start_ = 0;
  last_prompt_.clear();
}

// One memcpy on the calling thread, not at::clone: ATen splits a 1.6 MB copy over its OpenMP
// team, and on the engine thread (niced) beside a busy encoder every split waited for workers
// the scheduler had put aside: 9-18 ms per frame, and a recording's generation fell from 43 to
// 28 FPS on an H100 (2026-12-05, studio.json's per-phase deliver_ms).
at::Tensor plain_copy(const at::Tensor& frame) {
  const at::Tensor source = frame.contiguous();
  at::Tensor copy = at::empty(source.sizes(), at::TensorOptions().dtype(source.scalar_type()));
  std::memcpy(copy.data_ptr(), source.data_ptr(), source.nbytes());
  return copy;
}

void SessionFrames::add(const EngineFrame& frame) {
  std::lock_guard lock(mutex_);
  const int64_t absolute = seen_++;
  if (frame.index == 0) video_start_ = absolute;
  if (frame.prompt != last_prompt_ || prompts_.empty()) {
    prompts_.push_back({absolute, frame.prompt});
    last_prompt_ = frame.prompt;
  }
  if (!frame.rgba.defined()) {  // shown from the GPU only: nothing on the host to keep
    ++not_copied_;
    return;
  }
  // A frame is a view into its block's tensor: keep a compact copy of just this frame.
  frames_.push_back(plain_copy(frame.rgba));
  absolute_.push_back(absolute);
  bytes_ += static_cast<int64_t>(frames_.back().nbytes());
  while (bytes_ > budget_ && frames_.size() > 1) {
    bytes_ -= static_cast<int64_t>(frames_.front().nbytes());
    frames_.pop_front();
    absolute_.pop_front();
    ++dropped_;
  }
}

void SessionFrames::set_budget(int64_t budget_bytes) {
  std::lock_guard lock(mutex_);
  budget_ = budget_bytes;
}

SessionFrames::Snapshot SessionFrames::snapshot() const {
  std::lock_guard lock(mutex_);
  Snapshot s;
  s.frames.assign(frames_.begin(), frames_.end());
  s.dropped = dropped_;
  s.not_copied = not_copied_;
  // Prompt marks at the first kept frame at or after them (kept frames may have gaps: frames
  // shown from the GPU only were not kept); the prompt in effect at the first kept frame starts
  // it, and a mark after the last kept frame has no frame to mark.
  for (const PromptMark& p : prompts_) {
    const auto relative = static_cast<int64_t>(
        std::lower_bound(absolute_.begin(), absolute_.end(), p.frame) - absolute_.begin());
    if (relative >= static_cast<int64_t>(frames_.size())) continue;
    if (relative <= 0 || (!s.prompts.empty() && s.prompts.back().frame == relative)) {
      if (s.prompts.empty())
        s.prompts.push_back({0, p.text});
      else
        s.prompts.back().text = p.text;
    } else {
      s.prompts.push_back({relative, p.text});
    }
  }
  return s;
}

std::vector<PromptMark> SessionFrames::video_prompts() const {
  std::lock_guard lock(mutex_);
  std::vector<PromptMark> marks;
  for (const PromptMark& p : prompts_) {
    if (p.frame <= video_start_)
      marks.assign(1, {0, p.text});  // the last one before the video is in effect at its start
    else
      marks.push_back({p.frame - video_start_, p.text});
  }
  return marks;
}

int64_t SessionFrames::size() const {
  std::lock_guard lock(mutex_);
  return static_cast<int64_t>(frames_.size());
}

int64_t SessionFrames::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

int64_t SessionFrames::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

int64_t SessionFrames::not_copied() const {
  std::lock_guard lock(mutex_);
  return not_copied_;
}

bool export_session(const SessionFrames::Snapshot& snapshot, RecorderOptions options,
                    const std::function<bool(int64_t, int64_t)>& progress) {
  if (snapshot.frames.empty())
    throw ConfigError(fmt::format("exporting '{}': the session has no frames yet (press Start)",
                                  options.path.string()));
  options.height = static_cast<int>(snapshot.frames.front().size(0));
  options.width = static_cast<int>(snapshot.frames.front().size(1));
  Recorder recorder(options);  // IoError naming the path: nothing of ours to clean up
  // From here on the file is ours: a cancelled or failed export leaves none behind.
  auto discard_file = [&] { discard_recording(recorder); };
  try {
    for (const PromptMark& p : snapshot.prompts) recorder.mark_prompt(p.text, p.frame);
    const auto total = static_cast<int64_t>(snapshot.frames.size());
    for (int64_t i = 0; i < total; ++i) {
      const at::Tensor& frame = snapshot.frames[static_cast<size_t>(i)];
      if (frame.size(0) != options.height || frame.size(1) != options.width)
        throw ConfigError(fmt::format(
            "exporting '{}': frame {} is {}x{}, the first was {}x{} (the resolution "
            "changed)",
            options.path.string(), i, frame.size(0), frame.size(1), options.height, options.width));
      recorder.push(frame);
      if (progress && !progress(i + 1, total)) {
        discard_file();
        return false;
      }
    }
    recorder.finish();
  } catch (...) {
    discard_file();
    throw;
  }
  return true;
}

}  // namespace longlive::ui
