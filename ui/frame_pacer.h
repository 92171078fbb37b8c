#pragma once
// When each generated frame goes on screen. Qt-free (times are milliseconds on any monotonic
// clock the caller reads), so its timing is tested by simulating arrivals, timers and paints.
//
// Blocks arrive as bursts of frames (a block's frames within a few ms), one burst per block
// time. The pacer shows them evenly at the rate they are generated, measured from the bursts'
// starts, and holds a small cushion of frames at each burst's arrival, sized from how much the
// bursts' arrival times wander, so that a block that comes a little late does not leave the
// screen waiting. The cushion is held by moving the playout interval a few per cent around the
// generation interval (a smooth cadence, rather than a catch-up rush and a dry queue).
// It never falls behind: past a bound the oldest queued frames are dropped, and a new prompt's
// first frame may skip the queued ones (a prompt switch shows at once); both are counted.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace longlive::ui {

class FramePacer {
 public:
  // A frame that has been on screen this long without a paint (a hidden view) may be replaced.
  static constexpr double kPaintWaitMs = 100;

  // A frame arrived at now_ms with `queued` frames waiting before it. Returns how many of those
  // (the oldest) to drop: all of them when `skip_queued`, else the ones past the queue bound.
  size_t arrived(double now_ms, size_t queued, bool skip_queued);
  // Milliseconds from now_ms until the next waiting frame is due (<= 0: show it now).
  double wait_ms(double now_ms) const;
  // The next frame went on screen at now_ms.
  void shown(double now_ms);
  // The frame on screen was painted: only then may the next replace it (no frame is replaced
  // unseen), or after kPaintWaitMs.
  void painted() { painted_ = true; }
  // Paced (the default): frames are spread evenly; unpaced: each is shown as it arrives.
  void set_paced(bool paced) { paced_ = paced; }
  // A new video: rate, cushion, cadence and counts start again (paced or not stays).
  void reset();

  // The estimated generation interval (ms per frame) and the playout interval aimed at now.
  double generation_interval_ms() const { return generation_interval_ms_; }
  double interval_ms() const;
  // Frames the pacer aims to still hold when the next burst arrives.
  double cushion_frames() const;
  // Frames in the last complete burst (a block's frames; 0 before one was measured).
  int64_t burst_frames() const { return last_burst_frames_; }
  // The most frames it lets wait.
  size_t queue_bound() const;
  int64_t dropped() const { return dropped_; }

 private:
  void start_burst(double now_ms, size_t queued);

  struct Burst {
    double start_ms = 0;
    int64_t frames = 0;
  };
  std::deque<Burst> bursts_;  // the newest last, still filling
  double generation_interval_ms_ = 1000.0 / 16;
  double last_arrival_ms_ = -1;
  int64_t last_burst_frames_ = 0;
  // Frames still waiting when a burst starts, smoothed over bursts (< 0: none measured yet).
  double level_ = -1;
  // How far the bursts' starts wander from an even cadence, in frames, smoothed.
  double jitter_frames_ = 0;
  double next_due_ms_ = -1;
  double shown_ms_ = 0;
  bool painted_ = true;
  bool paced_ = true;
  int64_t dropped_ = 0;
};

// What a view's pacer saw, for replaying a real run's timing through FramePacer on the CPU
// (tests/ui_core/frame_pacer_test.cpp simulates the same events): frames arriving with the queue
// before them, frames shown, paints with how long they held the UI thread, and where a paint's
// time went: the frame's upload (inside the paint) and the swap of the composed window after it
// (Qt composes and swaps on the UI thread too). Records only while on; at most kMaxEvents (the
// oldest kept: a trace is taken over one phase of a run).
struct PacingTrace {
  enum class Kind : char {
    arrival = 'a',
    shown = 's',
    paint = 'p',
    upload = 'u',
    interop_map = 'm',    // CUDA-GL interop's map of the pixel buffer, inside an upload
    interop_unmap = 'n',  // its unmap
    swapped = 'w'
  };
  struct Event {
    double ms = 0;  // the view's clock
    Kind kind = Kind::arrival;
    int64_t index = 0;  // the frame (arrival, shown, upload)
    // arrival: frames queued before it; paint, upload, interop_*: duration in ms; swapped: ms
    // from the end of the last paint to the swap
    double value = 0;
    bool skip = false;  // arrival: a new prompt's first frame that skipped the queued ones
  };
  static constexpr size_t kMaxEvents = 1 << 16;
  bool on = false;
  std::vector<Event> events;

  void add(const Event& e) {
    if (on && events.size() < kMaxEvents) events.push_back(e);
  }
};

// The frames waiting for the screen, in order, with the pacer that says when each is due.
template <class Frame>
class PacedQueue {
 public:
  // Queues a frame that arrived at now_ms; `skip_queued` (a new prompt's first frame that a
  // switch waits for) drops the frames queued before it.
  void push(Frame frame, double now_ms, bool skip_queued = false) {
    const size_t drop = pacer_.arrived(now_ms, frames_.size(), skip_queued);
    frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(drop));
    frames_.push_back(std::move(frame));
  }
  // Milliseconds until the next frame is due (<= 0: now); none while nothing waits.
  std::optional<double> wait_ms(double now_ms) const {
    if (frames_.empty()) return std::nullopt;
    return pacer_.wait_ms(now_ms);
  }
  // The next frame, which goes on screen at now_ms. Only while one waits.
  Frame pop(double now_ms) {
    Frame frame = std::move(frames_.front());
    frames_.pop_front();
    pacer_.shown(now_ms);
    return frame;
  }
  void painted() { pacer_.painted(); }
  void clear() {
    frames_.clear();
    pacer_.reset();
  }
  size_t size() const { return frames_.size(); }
  FramePacer& pacer() { return pacer_; }
  const FramePacer& pacer() const { return pacer_; }

 private:
  std::deque<Frame> frames_;
  FramePacer pacer_;
};

}  // namespace longlive::ui
