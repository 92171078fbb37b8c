// longlive bench-presets : how long a hot preset change takes, for every ordered pair of presets:
// from the change (SessionFactory::change_preset, as the studio's dropdown does it) to the first
// frames made under the new preset (its first block generated and decoded to RGBA on the host).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "longlive/async_decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/preset.h"
#include "longlive/profiler.h"
#include "longlive/session.h"
#include "summary.h"

namespace longlive::cli {
namespace {

struct BenchPresetsArgs {
  std::string presets = "quality,balanced,speed,turbo,turbo_fp8,ultra,low_memory";
  std::string presets_dir = default_presets_dir();
  std::string random = "full";
  std::string device = "auto";
  std::string json;
  int height = 0, width = 0;
  int repeats = 3;        // changes timed per ordered pair
  int steady_blocks = 2;  // blocks generated between changes
};

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run(const BenchPresetsArgs& a) {
  std::vector<Preset> presets;
  for (const auto& name : split(a.presets)) presets.push_back(find_preset(a.presets_dir, name));
  if (presets.size() < 2) throw ConfigError("--presets: give at least two preset names");
  ModelSpec model;
  model.tiny_random = a.random == "tiny";
  model.full_random = !model.tiny_random;
  model.device = pick_device(a.device);
  const at::Device device = *model.device;
  SessionOverrides overrides;
  overrides.text_encoder = false;  // random prompt embeddings: no umT5 to load
  SessionFactory factory(model, overrides);
  auto session = factory.open(presets[0], a.height, a.width);
  auto gen = at::detail::createCPUGenerator(7);
  const auto& config = session->generator->options().model;
  session->generator->start(
      at::randn({1, config.text_len, config.text_dim}, gen, at::TensorOptions(at::kFloat)) * 0.1,
      1);
  auto block_to_host = [&] {
    session->decoder->submit(session->generator->next_block());
    return session->decoder->take();  // waits for the DiT and the decode: frames on the host
  };
  for (int i = 0; i < a.steady_blocks + 2; ++i) block_to_host();  // warm up the first preset

  using Clock = std::chrono::steady_clock;
  nlohmann::json pairs = nlohmann::json::array();
  std::cout << fmt::format("preset change -> first frames of the new preset, {}x{}, {} ({})\n",
                           session->height, session->width, device_name(device), device.str());
  const SessionFactory::Stats loads_before = factory.stats();
  size_t current = 0;
  // Each ordered pair (from, to) `repeats` times: from the current preset go to `from` (untimed,
  // with a few blocks to reach its steady state), then time the change to `to`.
  for (int r = 0; r < a.repeats; ++r) {
    for (size_t from = 0; from < presets.size(); ++from) {
      for (size_t to = 0; to < presets.size(); ++to) {
        if (from == to) continue;
        if (current != from) {
          factory.change_preset(*session, presets[from]);
          for (int i = 0; i < a.steady_blocks; ++i) block_to_host();
        }
        synchronize(device);
        const auto begin = Clock::now();
        const PresetChange change = factory.change_preset(*session, presets[to]);
        synchronize(device);
        const double change_ms =
            std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
        const at::Tensor frames = block_to_host();
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
        current = to;
        for (int i = 0; i < a.steady_blocks; ++i) block_to_host();
        auto it = std::find_if(pairs.begin(), pairs.end(), [&](const nlohmann::json& p) {
          return p["from"] == presets[from].name && p["to"] == presets[to].name;
        });
        if (it == pairs.end()) {
          pairs.push_back({{"from", presets[from].name},
                           {"to", presets[to].name},
                           {"ms", nlohmann::json::array()},
                           {"change_ms", nlohmann::json::array()},
                           {"dit_rebuilt", change.dit_rebuilt},
                           {"caches_kept", change.caches_kept},
                           {"text_encoder_moved", change.text_encoder_moved},
                           {"decoder_changed", change.decoder_changed},
                           {"frames", frames.size(0)}});
          it = pairs.end() - 1;
        }
        (*it)["ms"].push_back(ms);
        (*it)["change_ms"].push_back(change_ms);
      }
    }
  }
  double worst = 0;
  for (auto& p : pairs) {
    const Summary times = summarize(p["ms"].get<std::vector<double>>());
    p["median_ms"] = times.median;
    p["max_ms"] = times.max;
    p["change_median_ms"] = summarize(p["change_ms"].get<std::vector<double>>()).median;
    worst = std::max(worst, p["median_ms"].get<double>());
    std::cout << fmt::format(
        "  {:>10} -> {:<10} median {:7.1f} ms  max {:7.1f} ms  (change {:6.1f} ms){}{}{}\n",
        p["from"].get<std::string>(), p["to"].get<std::string>(), p["median_ms"].get<double>(),
        p["max_ms"].get<double>(), p["change_median_ms"].get<double>(),
        p["caches_kept"].get<bool>() ? "  (caches kept)" : "  (re-cache)",
        p["dit_rebuilt"].get<bool>() ? "  (DiT rebuilt)" : "",
        p["decoder_changed"].get<bool>() ? "  (decoder changed)" : "");
  }
  const int64_t loads = factory.stats().weight_loads - loads_before.weight_loads;
  std::cout << fmt::format("worst median {:.1f} ms; weight loads during the changes: {}\n", worst,
                           loads);
  if (!a.json.empty()) {
    const char* commit = std::getenv("LONGLIVE_COMMIT");
    nlohmann::json j = {{"kind", "preset_switch"},
                        {"gpu", device_name(device)},
                        {"device", device.str()},
                        {"weights", a.random},
                        {"height", session->height},
                        {"width", session->width},
                        {"commit", commit ? commit : "unknown"},
                        {"repeats", a.repeats},
                        {"weight_loads_during_changes", loads},
                        {"worst_median_ms", worst},
                        {"pairs", pairs}};
    std::ofstream(a.json) << j.dump(2) << "\n";
  }
  return 0;
}

const Registrar kBenchPresets("bench-presets", [](CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "bench-presets", "Time hot preset changes: change -> first frames of the new preset");
  auto a = std::make_shared<BenchPresetsArgs>();
  cmd->add_option("--presets", a->presets, "Comma-separated preset names (every ordered pair)");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--random", a->random, "Random weights: full (1.3B config) or tiny")
      ->check(CLI::IsMember({"full", "tiny"}));
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  cmd->add_option("--height", a->height, "Video height (default: the first preset's)");
  cmd->add_option("--width", a->width, "Video width (default: the first preset's)");
  cmd->add_option("--repeats", a->repeats, "Timed changes per pair")->check(CLI::Range(1, 100));
  cmd->add_option("--steady-blocks", a->steady_blocks, "Blocks between changes")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--json", a->json, "Write results as JSON here");
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
