#pragma once
// bench --switch-latency: how long a prompt switch typed while the video runs takes to reach the
// screen (the overlay's "engine: ... ms from command to frame ready", EngineStats::
// last_switch_ms), measured on the studio's Engine, the switches at random moments of a block.
#include <nlohmann/json.hpp>
#include <string>

#include "longlive/preset.h"
#include "longlive/session.h"
#include "summary.h"

namespace longlive::cli {

struct SwitchLatency {
  int switches = 0;
  // Switched (Engine::switch_prompt) -> the first frame of the new prompt ready: the first switch
  // (the new prompt's first use) apart, the later ones between two prompts used before.
  double first_ms = 0;
  Summary later;
  // The engine's block times without a switch (before the first), and the blocks given up for a
  // switch mid-way (EngineStats::abandoned_blocks) over all switches.
  Summary plain_block;
  int64_t abandoned_blocks = 0;
};

// Runs an Engine on `model` (the caller's random model) and switches its prompt `switches` + 1
// times, each at a random moment (seeded) of a block: a uniform fraction of a plain block's time
// after a block ended.
SwitchLatency measure_switch_latency(const ModelSpec& model, const Preset& preset, int height,
                                     int width, int switches);

nlohmann::json to_json(const SwitchLatency& latency);
std::string describe(const SwitchLatency& latency);

}  // namespace longlive::cli
