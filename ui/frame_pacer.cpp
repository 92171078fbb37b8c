#include "frame_pacer.h"

#include <algorithm>
#include <cmath>

namespace longlive::ui {

namespace {
// An arrival starts a new burst after a gap of this many generation intervals, within
// [kMinBurstGapMs, kMaxBurstGapMs]: a block's frames come within a few ms, or ~20 ms apart when
// the engine thread is slow to hand them over (a recorder that cannot keep up, H200), and the gap
// before the next block is the block time less that.
constexpr double kBurstGapIntervals = 2.5, kMinBurstGapMs = 20, kMaxBurstGapMs = 50;
// The generation interval stays within 4..120 fps; it is measured over the last bursts.
constexpr double kMinIntervalMs = 1000.0 / 120, kMaxIntervalMs = 1000.0 / 4;
constexpr size_t kRateBursts = 5;
// Smoothing of the queue level and the jitter over bursts (weight of the newest).
constexpr double kLevelWeight = 0.3, kJitterWeight = 0.2;
// The cushion covers this many mean deviations of a burst's start (about 95 % of late bursts
// for normal jitter), at least one frame, at most half a burst.
constexpr double kCushionPerJitter = 2.5;
// The playout interval is the generation interval times 1 - kGain * (level - cushion) / burst,
// within [kFastest, kSlowest]: a surplus of a fifth of a burst plays 10 % faster.
constexpr double kGain = 0.5, kFastest = 0.85, kSlowest = 1.1;
// More than a burst beyond the cushion: catch up harder (a UI stall left a backlog).
constexpr double kFastestBehind = 0.7;
// The queue never holds fewer than this (and room for a whole first block before one was seen).
constexpr size_t kMinQueued = 8;
}  // namespace

void FramePacer::reset() {
  const bool paced = paced_;
  *this = FramePacer{};
  paced_ = paced;
}

size_t FramePacer::arrived(double now_ms, size_t queued, bool skip_queued) {
  const double gap = now_ms - last_arrival_ms_;
  const double burst_gap =
      std::clamp(kBurstGapIntervals * generation_interval_ms_, kMinBurstGapMs, kMaxBurstGapMs);
  if (last_arrival_ms_ < 0 || gap > burst_gap) start_burst(now_ms, queued);
  ++bursts_.back().frames;
  last_arrival_ms_ = now_ms;
  size_t drop = 0;
  if (skip_queued)
    drop = queued;
  else if (queued + 1 > queue_bound())
    drop = queued + 1 - queue_bound();  // behind: the newest frames matter, the oldest go
  dropped_ += static_cast<int64_t>(drop);
  return drop;
}

void FramePacer::start_burst(double now_ms, size_t queued) {
  bool stalled = false;
  if (!bursts_.empty()) {
    last_burst_frames_ = bursts_.back().frames;
    const double period =
        generation_interval_ms_ * static_cast<double>(std::max<int64_t>(last_burst_frames_, 1));
    // A stall (pause, preset change) longer than two bursts: the rate is measured again, and
    // the drained queue says nothing about the cadence.
    stalled = now_ms - last_arrival_ms_ > 2 * period + kMaxBurstGapMs;
    if (stalled) bursts_.clear();
  }
  if (!stalled && !bursts_.empty()) {
    const auto level = static_cast<double>(queued);
    level_ = level_ < 0 ? level : level_ + kLevelWeight * (level - level_);
  }
  bursts_.push_back({now_ms, 0});
  while (bursts_.size() > kRateBursts) bursts_.pop_front();
  // The rate: the time between the window's first and newest burst start over the frames of the
  // bursts in between (a burst split in parts counts right).
  int64_t frames = 0;
  for (size_t i = 0; i + 1 < bursts_.size(); ++i) frames += bursts_[i].frames;
  if (frames == 0) return;
  generation_interval_ms_ =
      std::clamp((now_ms - bursts_.front().start_ms) / static_cast<double>(frames), kMinIntervalMs,
                 kMaxIntervalMs);
  // The jitter: how far this start is from where the previous burst's frames at the measured
  // rate would put it. Only once the rate is measured over two bursts or more.
  if (bursts_.size() >= 3) {
    const Burst& previous = bursts_[bursts_.size() - 2];
    const double expected =
        previous.start_ms + static_cast<double>(previous.frames) * generation_interval_ms_;
    const double deviation = std::abs(now_ms - expected) / generation_interval_ms_;
    jitter_frames_ += kJitterWeight * (deviation - jitter_frames_);
  }
}

double FramePacer::cushion_frames() const {
  const double half_burst = std::max(1.0, static_cast<double>(last_burst_frames_) / 2);
  return std::clamp(std::ceil(kCushionPerJitter * jitter_frames_), 1.0, half_burst);
}

double FramePacer::interval_ms() const {
  if (level_ < 0 || last_burst_frames_ == 0) return generation_interval_ms_;
  const auto burst = static_cast<double>(last_burst_frames_);
  const double surplus = level_ - cushion_frames();
  const double fastest = surplus > burst ? kFastestBehind : kFastest;
  return generation_interval_ms_ * std::clamp(1 - kGain * surplus / burst, fastest, kSlowest);
}

size_t FramePacer::queue_bound() const {
  if (last_burst_frames_ == 0) return 4 * kMinQueued;
  const auto burst = static_cast<double>(last_burst_frames_);
  return std::max(kMinQueued, static_cast<size_t>(std::ceil(1.5 * burst + cushion_frames())));
}

double FramePacer::wait_ms(double now_ms) const {
  double wait = paced_ && next_due_ms_ >= 0 ? next_due_ms_ - now_ms : 0;
  if (!painted_) wait = std::max(wait, shown_ms_ + kPaintWaitMs - now_ms);
  return wait;
}

void FramePacer::shown(double now_ms) {
  const double interval = interval_ms();
  // On schedule (a timer fires a little late): the cadence goes on from the due time, so the
  // lateness does not add up; otherwise (the queue ran dry) it starts again from now.
  const bool on_schedule = next_due_ms_ >= 0 && now_ms - next_due_ms_ < interval / 2;
  next_due_ms_ = (on_schedule ? next_due_ms_ : now_ms) + interval;
  shown_ms_ = now_ms;
  painted_ = false;
}

}  // namespace longlive::ui
