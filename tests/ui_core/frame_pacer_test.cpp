// The view's pacing, simulated: frames arrive in bursts as the engine delivers blocks, a timer
// fires when the pacer says the next frame is due, and a paint follows each shown frame a few
// ms later, as in VideoView. The figures asked of the studio (issue #16: displayed rate as
// generated, frame interval p95 <= 1.5 x p50, nothing dropped in a steady stream) are checked
// on the times the frames went on screen.
#include "frame_pacer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace longlive::ui {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

struct Arrival {
  double at_ms = 0;
  int64_t index = 0;
  bool first_of_prompt = false;
};

struct Shown {
  double at_ms = 0;
  int64_t index = 0;
};

// One block's frames every period, `spread_ms` from the first frame to the last.
struct Stream {
  int64_t frames_per_block = 12;
  double spread_ms = 3;
  std::vector<double> block_starts;  // ms

  std::vector<Arrival> arrivals() const {
    std::vector<Arrival> out;
    int64_t index = 0;
    for (const double start : block_starts)
      for (int64_t f = 0; f < frames_per_block; ++f)
        out.push_back({start + spread_ms * static_cast<double>(f) /
                                   static_cast<double>(std::max<int64_t>(frames_per_block - 1, 1)),
                       index++});
    return out;
  }
};

// Block starts with a normal jitter around `period_ms` and, with probability `late_odds`, a
// block `late_ms` late (a prompt switch's re-cache, a preset change).
std::vector<double> block_starts(int blocks, double period_ms, double jitter_ms, uint32_t seed,
                                 double late_odds = 0, double late_ms = 0, double from_ms = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> jitter(0, jitter_ms);
  std::uniform_real_distribution<double> odds(0, 1);
  std::vector<double> out;
  double t = from_ms;
  for (int b = 0; b < blocks; ++b) {
    double period = std::max(period_ms / 2, period_ms + jitter(rng));
    if (odds(rng) < late_odds) period += late_ms;
    t += period;
    out.push_back(t);
  }
  return out;
}

// The view's event loop: arrivals, the single-shot pacer timer (whole ms, as QTimer), and the
// paint of a shown frame `paint_ms` later. `busy` lists [from, to) spans in which the UI thread
// handles nothing (arrivals and timers wait until it is free).
struct Simulation {
  double paint_ms = 4;
  // How long the n-th paint keeps the UI thread busy (arrivals and timers wait meanwhile); none
  // by default (a paint then takes no UI time, only its delay).
  std::function<double(size_t)> paint_busy_ms;
  bool paced = true;
  std::vector<std::pair<double, double>> busy;
  PacedQueue<int64_t> queue;
  std::vector<Shown> shown;

  double free_at(double t) const {
    for (const auto& [from, to] : busy)
      if (t >= from && t < to) return to;
    return t;
  }

  void run(const std::vector<Arrival>& arrivals) {
    queue.pacer().set_paced(paced);
    double timer_at = kNever, paint_at = kNever;
    size_t next = 0, paints = 0;
    auto schedule = [&](double now) {
      while (auto wait = queue.wait_ms(now)) {
        if (*wait > 0) {
          timer_at = now + std::ceil(*wait);
          return;
        }
        shown.push_back({now, queue.pop(now)});
        paint_at = now + paint_ms;
      }
    };
    for (;;) {
      const double arrival_at = next < arrivals.size() ? free_at(arrivals[next].at_ms) : kNever;
      const double timer = timer_at < kNever ? free_at(timer_at) : kNever;
      const double now = std::min({arrival_at, timer, paint_at});
      if (now == kNever) return;
      if (now == paint_at) {
        paint_at = kNever;
        if (paint_busy_ms) busy.push_back({now, now + paint_busy_ms(paints++)});
        queue.painted();
      } else if (now == timer) {
        timer_at = kNever;
      } else {
        const Arrival& a = arrivals[next++];
        queue.push(a.index, now, a.first_of_prompt);
      }
      schedule(now);
    }
  }

  // Intervals between frames going on screen, from the shown frame `from` on.
  std::vector<double> intervals(size_t from) const {
    std::vector<double> out;
    for (size_t i = std::max<size_t>(from, 1); i < shown.size(); ++i)
      out.push_back(shown[i].at_ms - shown[i - 1].at_ms);
    return out;
  }
};

double percentile(std::vector<double> values, double pct) {
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(pct / 100 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// The frames shown in order, none twice; returns how many of the arrivals were shown.
size_t check_shown_in_order(const std::vector<Shown>& shown) {
  for (size_t i = 1; i < shown.size(); ++i)
    EXPECT_LT(shown[i - 1].index, shown[i].index) << "frame " << i << " went back or repeated";
  return shown.size();
}

TEST(FramePacer, SteadyBlocksPlayEvenlyAtTheGeneratedRateWithNothingDropped) {
  // The H200's balanced stream: 12 frames every ~295 ms (block time p95 ~305 ms).
  Stream stream{.block_starts = block_starts(300, 295, 6, 1)};
  Simulation sim;
  sim.run(stream.arrivals());
  const auto frames = stream.arrivals().size();
  EXPECT_EQ(check_shown_in_order(sim.shown), frames);
  EXPECT_EQ(sim.queue.pacer().dropped(), 0);
  const auto steady = sim.intervals(20 * 12);  // after 20 blocks
  const double p50 = percentile(steady, 50), p95 = percentile(steady, 95);
  EXPECT_NEAR(p50, 295.0 / 12, 295.0 / 12 * 0.05);
  EXPECT_LE(p95, 1.5 * p50) << "p50 " << p50 << " ms";
  const double shown_span = sim.shown.back().at_ms - sim.shown[20 * 12].at_ms;
  const double displayed_fps = static_cast<double>(sim.shown.size() - 20 * 12 - 1) / shown_span;
  EXPECT_NEAR(displayed_fps * 1000, 12 / 0.295, 12 / 0.295 * 0.03);
  EXPECT_NEAR(sim.queue.pacer().generation_interval_ms(), 295.0 / 12, 295.0 / 12 * 0.05);
}

TEST(FramePacer, ACushionAbsorbsBlocksThatComeLate) {
  // Wider jitter and one block in 20 coming 60 ms late: the cushion grows to hold them.
  Stream stream{.block_starts = block_starts(400, 295, 20, 2, 0.05, 60)};
  Simulation sim;
  sim.run(stream.arrivals());
  EXPECT_EQ(check_shown_in_order(sim.shown), stream.arrivals().size());
  EXPECT_EQ(sim.queue.pacer().dropped(), 0);
  const auto steady = sim.intervals(30 * 12);
  const double p50 = percentile(steady, 50), p95 = percentile(steady, 95);
  EXPECT_LE(p95, 1.5 * p50) << "p50 " << p50 << " ms";
  EXPECT_GE(sim.queue.pacer().cushion_frames(), 2);
  EXPECT_LT(sim.queue.pacer().cushion_frames(), 6.5);
}

TEST(FramePacer, ABlockHandedOverInPartsKeepsTheRate) {
  // While recording, the engine thread copied frames to the host for up to 223 ms of a 295 ms
  // block (H200, 2026-12-04): a block's frames arrive spread over most of its time.
  Stream stream{.spread_ms = 220, .block_starts = block_starts(200, 295, 6, 3)};
  Simulation sim;
  sim.run(stream.arrivals());
  EXPECT_EQ(check_shown_in_order(sim.shown), stream.arrivals().size());
  EXPECT_EQ(sim.queue.pacer().dropped(), 0);
  EXPECT_NEAR(sim.queue.pacer().generation_interval_ms(), 295.0 / 12, 295.0 / 12 * 0.05);
  EXPECT_EQ(sim.queue.pacer().burst_frames(), 12);
  const auto steady = sim.intervals(20 * 12);
  EXPECT_LE(percentile(steady, 95), 1.5 * percentile(steady, 50));
}

TEST(FramePacer, PaintsThatHoldTheUiThreadDoNotSpeedThePlayoutUp) {
  // The H200 studio (2026-12-05): a block's frames leave the engine within a few ms, but the UI
  // thread takes them between paints, and a paint sometimes holds it for tens of ms (p50 0.5 ms,
  // p95 7.5 ms, max 45 ms measured): the frames of one block then reach the queue in two parts.
  Stream stream{.spread_ms = 4, .block_starts = block_starts(300, 300, 6, 8)};
  Simulation sim;
  sim.paint_ms = 1;
  sim.paint_busy_ms = [](size_t n) { return n % 25 == 7 ? 40.0 : n % 10 == 3 ? 8.0 : 0.5; };
  sim.run(stream.arrivals());
  EXPECT_EQ(check_shown_in_order(sim.shown), stream.arrivals().size());
  EXPECT_EQ(sim.queue.pacer().dropped(), 0);
  const auto steady = sim.intervals(20 * 12);
  const double p50 = percentile(steady, 50), p95 = percentile(steady, 95);
  EXPECT_NEAR(p50, 300.0 / 12, 300.0 / 12 * 0.05);
  EXPECT_LE(p95, 1.5 * p50) << "p50 " << p50 << " ms";
  EXPECT_NEAR(sim.queue.pacer().generation_interval_ms(), 300.0 / 12, 300.0 / 12 * 0.05);
}

TEST(FramePacer, FollowsAFasterPresetWithinAFewBlocks) {
  // balanced (295 ms blocks), then a faster preset (150 ms) from block 60 on.
  auto starts = block_starts(60, 295, 6, 4);
  const auto faster = block_starts(200, 150, 4, 5, 0, 0, starts.back());
  starts.insert(starts.end(), faster.begin(), faster.end());
  Stream stream{.block_starts = starts};
  Simulation sim;
  sim.run(stream.arrivals());
  check_shown_in_order(sim.shown);
  EXPECT_LE(sim.queue.pacer().dropped(), 12) << "at most a block while the rate changes";
  EXPECT_NEAR(sim.queue.pacer().generation_interval_ms(), 150.0 / 12, 150.0 / 12 * 0.05);
  const auto steady = sim.intervals((60 + 20) * 12);
  const double p50 = percentile(steady, 50);
  EXPECT_NEAR(p50, 150.0 / 12, 150.0 / 12 * 0.05);
  EXPECT_LE(percentile(steady, 95), 1.5 * p50);
}

TEST(FramePacer, APauseDoesNotMakeItRushOrDropAfterwards) {
  auto starts = block_starts(40, 295, 6, 6);
  const auto after = block_starts(60, 295, 6, 7, 0, 0, starts.back() + 3000);  // 3 s paused
  starts.insert(starts.end(), after.begin(), after.end());
  Stream stream{.block_starts = starts};
  Simulation sim;
  sim.run(stream.arrivals());
  EXPECT_EQ(check_shown_in_order(sim.shown), stream.arrivals().size());
  EXPECT_EQ(sim.queue.pacer().dropped(), 0);
  // After the pause, from its third block on: the cadence it had before.
  const auto steady = sim.intervals((40 + 2) * 12 + 1);
  const double p50 = percentile(steady, 50);
  EXPECT_NEAR(p50, 295.0 / 12, 295.0 / 12 * 0.1);
  EXPECT_GE(*std::min_element(steady.begin(), steady.end()), 0.69 * 295.0 / 12);
}

TEST(FramePacer, AStalledUiThreadDropsTheOldestAndCatchesUp) {
  // The UI thread blocks for 1.5 s: five blocks arrive at once when it is free again.
  Stream stream{.block_starts = block_starts(80, 295, 6, 8)};
  Simulation sim;
  const double stall_from = stream.block_starts[30] - 10;
  sim.busy.push_back({stall_from, stall_from + 1500});
  sim.run(stream.arrivals());
  check_shown_in_order(sim.shown);
  const FramePacer& pacer = sim.queue.pacer();
  EXPECT_GT(pacer.dropped(), 0);
  EXPECT_EQ(sim.shown.size() + static_cast<size_t>(pacer.dropped()), stream.arrivals().size());
  // The frames shown in the last 20 blocks came within two blocks of arriving (caught up).
  const auto arrivals = stream.arrivals();
  for (size_t i = sim.shown.size() - 20 * 12; i < sim.shown.size(); ++i) {
    const double arrived = arrivals[static_cast<size_t>(sim.shown[i].index)].at_ms;
    EXPECT_LT(sim.shown[i].at_ms - arrived, 2 * 295) << "frame " << sim.shown[i].index;
  }
}

TEST(FramePacer, ANewPromptsFirstFrameSkipsTheQueuedOnes) {
  Stream stream{.block_starts = block_starts(30, 295, 6, 9)};
  auto arrivals = stream.arrivals();
  const size_t first_new =
      20 * 12 + 1;  // a switch lands mid-stream (the frame after a burst's first)
  arrivals[first_new].first_of_prompt = true;
  Simulation sim;
  sim.run(arrivals);
  check_shown_in_order(sim.shown);
  const auto at = std::find_if(sim.shown.begin(), sim.shown.end(), [&](const Shown& s) {
    return s.index == static_cast<int64_t>(first_new);
  });
  ASSERT_NE(at, sim.shown.end());
  // Shown within one frame interval of arriving, the older frames still queued dropped.
  EXPECT_LE(at->at_ms - arrivals[first_new].at_ms, 295.0 / 12 * 1.2);
  EXPECT_GT(sim.queue.pacer().dropped(), 0);
  EXPECT_EQ(sim.shown.size() + static_cast<size_t>(sim.queue.pacer().dropped()), arrivals.size());
}

TEST(FramePacer, UnpacedShowsEachFrameOnceTheLastWasPainted) {
  Stream stream{.block_starts = block_starts(10, 295, 6, 10)};
  Simulation sim;
  sim.paced = false;
  sim.run(stream.arrivals());
  EXPECT_EQ(check_shown_in_order(sim.shown), stream.arrivals().size());
  // Each frame waits only for the one before it to be painted.
  const auto intervals = sim.intervals(1);
  EXPECT_LE(*std::max_element(intervals.begin(), intervals.end()), 295);
  EXPECT_GE(*std::min_element(intervals.begin(), intervals.end()), sim.paint_ms);
}

TEST(FramePacer, AFrameNeverPaintedIsReplacedAfterThePaintWait) {
  FramePacer pacer;
  pacer.set_paced(false);
  EXPECT_EQ(pacer.arrived(0, 0, false), 0u);
  EXPECT_LE(pacer.wait_ms(0), 0);
  pacer.shown(0);
  EXPECT_EQ(pacer.arrived(1, 0, false), 0u);
  EXPECT_DOUBLE_EQ(pacer.wait_ms(1), FramePacer::kPaintWaitMs - 1);  // a hidden view: no paint
  pacer.painted();
  EXPECT_LE(pacer.wait_ms(1), 0);
}

TEST(FramePacer, TheQueueBoundFollowsTheBurstAndClearStartsAgain) {
  PacedQueue<int> queue;
  for (int i = 0; i < 40; ++i) queue.push(i, 0);  // one burst, nothing shown yet
  EXPECT_EQ(queue.size(), queue.pacer().queue_bound());
  EXPECT_EQ(queue.pacer().dropped(), static_cast<int64_t>(40 - queue.size()));
  queue.push(40, 300);  // a second burst: the first had 40 frames
  EXPECT_EQ(queue.pacer().burst_frames(), 40);
  EXPECT_GE(queue.pacer().queue_bound(), 60u);
  queue.pacer().set_paced(false);
  queue.clear();
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_EQ(queue.pacer().dropped(), 0);
  EXPECT_EQ(queue.pacer().burst_frames(), 0);
  queue.push(0, 1000);
  queue.pop(1000);
  queue.painted();
  queue.push(1, 1001);
  EXPECT_LE(*queue.wait_ms(1001), 0) << "unpaced survives clear()";
}

// A real run's pacing events (PacingTrace rows [ms, kind, frame, value, skip], the studio's
// pacing.json, `packaging/device/studio_run.sh`) replayed through the pacer: the recorded
// arrivals at their times, each paint holding the UI thread as long as it did. Prints the
// recorded and the replayed frame intervals, so a fault seen in the studio can be reproduced and
// fixed here; the replay must meet the studio's target (p95 <= 1.5 x p50). Skipped without
// LONGLIVE_PACING_TRACE (a pacing.json file).
TEST(FramePacerTrace, AReplayedRunPacesEvenly) {
  const char* path = std::getenv("LONGLIVE_PACING_TRACE");
  if (path == nullptr || *path == 0) GTEST_SKIP() << "no LONGLIVE_PACING_TRACE";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const nlohmann::json rows = nlohmann::json::parse(in).at("events");
  std::vector<Arrival> arrivals;
  std::vector<double> paint_ms, recorded_shown;
  for (const auto& row : rows) {
    const double ms = row.at(0);
    const std::string kind = row.at(1);
    if (kind == "a") arrivals.push_back({ms, row.at(2).get<int64_t>(), row.at(4).get<bool>()});
    if (kind == "s") recorded_shown.push_back(ms);
    if (kind == "p") paint_ms.push_back(row.at(3).get<double>());
  }
  ASSERT_GT(arrivals.size(), 24u) << path << ": too few arrivals";
  std::vector<double> recorded;
  for (size_t i = 1; i < recorded_shown.size(); ++i)
    recorded.push_back(recorded_shown[i] - recorded_shown[i - 1]);
  Simulation sim;
  sim.paint_ms = 1;
  sim.paint_busy_ms = [&](size_t n) {
    return paint_ms.empty() ? 0.5 : paint_ms[n % paint_ms.size()];
  };
  sim.run(arrivals);
  const auto replayed = sim.intervals(12);
  ASSERT_FALSE(replayed.empty());
  std::printf("recorded: %zu intervals, p50 %.1f p95 %.1f p99 %.1f ms\n", recorded.size(),
              recorded.empty() ? 0 : percentile(recorded, 50),
              recorded.empty() ? 0 : percentile(recorded, 95),
              recorded.empty() ? 0 : percentile(recorded, 99));
  std::printf(
      "replayed: %zu intervals, p50 %.1f p95 %.1f p99 %.1f ms, generation %.2f ms, "
      "cushion %.0f, dropped %lld\n",
      replayed.size(), percentile(replayed, 50), percentile(replayed, 95), percentile(replayed, 99),
      sim.queue.pacer().generation_interval_ms(), sim.queue.pacer().cushion_frames(),
      static_cast<long long>(sim.queue.pacer().dropped()));
  EXPECT_LE(percentile(replayed, 95), 1.5 * percentile(replayed, 50));
}

}  // namespace
}  // namespace longlive::ui
