#include "bench_switch_latency.h"

#include <fmt/format.h>

#include <functional>
#include <string>
#include <vector>

#include "engine_wait.h"
#include "longlive/engine.h"
#include "longlive/log.h"

namespace longlive::cli {

SwitchLatency measure_switch_latency(const ModelSpec& model, const Preset& preset, int height,
                                     int width, int switches) {
  constexpr const char* kWho = "bench --switch-latency";
  SwitchLatency out;
  out.switches = switches;
  EngineErrors errors;
  Engine::Callbacks callbacks;
  errors.collect_from(callbacks);
  Engine engine(model, preset, callbacks, height, width, timing_engine_options());
  auto wait = [&](const char* what, const std::function<bool(const EngineStats&)>& done) {
    return wait_until(engine, done, errors, kWho, what);
  };
  auto next_block_end = [&](const char* what) {
    const int64_t seen = engine.stats().blocks;
    return wait(what, [&](const EngineStats& st) { return st.blocks > seen; });
  };
  const std::string prompts[] = {"a red fox running through fresh snow",
                                 "a lighthouse on a cliff in a storm at night"};
  engine.start(prompts[0], 1);
  // Warm-up (graphs captured, the decoder's plans), then plain blocks timed.
  std::vector<double> plain;
  for (int i = 0; i < 9; ++i) {
    const EngineStats s = next_block_end("warming up");
    if (i >= 6) plain.push_back(s.last_block_ms);
  }
  out.plain_block = summarize(plain);
  const int64_t abandoned_before = engine.stats().abandoned_blocks;
  RandomMoments moments;
  std::vector<double> later;
  for (int i = 0; i <= switches; ++i) {
    // A block's end, then a random moment of the next.
    next_block_end("waiting for a block to end");
    moments.wait_within(out.plain_block.median);
    const double before = engine.stats().last_switch_ms;
    engine.switch_prompt(prompts[(i + 1) % 2]);
    const EngineStats s = wait("waiting for the new prompt's first frame",
                               [&](const EngineStats& st) { return st.last_switch_ms != before; });
    if (i == 0)
      out.first_ms = s.last_switch_ms;
    else
      later.push_back(s.last_switch_ms);
    log::info("{}: switch {}: {:.1f} ms to the new prompt's first frame", kWho, i + 1,
              s.last_switch_ms);
  }
  out.later = summarize(later);
  out.abandoned_blocks = engine.stats().abandoned_blocks - abandoned_before;
  engine.stop();
  return out;
}

nlohmann::json to_json(const SwitchLatency& l) {
  return {{"switches", l.switches},
          {"first_switch_ms", l.first_ms},
          {"later_switches", to_json(l.later)},
          {"engine_block", to_json(l.plain_block)},
          {"abandoned_blocks", l.abandoned_blocks}};
}

std::string describe(const SwitchLatency& l) {
  return fmt::format(
      "switch latency switched -> new prompt's first frame ready: first switch {:.1f} ms, later "
      "switches median {:.1f} ms (p99 {:.1f}, {} switches at random moments of a block); "
      "engine block {:.1f} ms; {} blocks given up for them\n",
      l.first_ms, l.later.median, l.later.p99, l.later.count, l.plain_block.median,
      l.abandoned_blocks);
}

}  // namespace longlive::cli
