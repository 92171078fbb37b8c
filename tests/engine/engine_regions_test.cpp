// The Engine's per-block region times, what the studio's overlay shows: every block (the one
// with a prompt switch too) reports the model's regions and the decode, largest first.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "longlive/engine.h"

namespace longlive::test {
namespace {

bool has_region(const EngineStats& s, const std::string& prefix) {
  return std::any_of(s.regions.begin(), s.regions.end(),
                     [&](const RegionTime& r) { return r.name.rfind(prefix, 0) == 0; });
}

TEST(EngineRegions, EveryBlockReportsModelRegionsAndDecode) {
  std::mutex m;
  std::vector<EngineStats> seen;
  Engine::Callbacks cb;
  cb.on_stats = [&](const EngineStats& s) {
    std::lock_guard lock(m);
    if (s.blocks > 0) seen.push_back(s);
  };
  Preset preset;
  preset.name = "test";
  preset.local_attn_frames = 9;
  Engine engine({.tiny_random = true, .folder = {}, .device = {}}, preset, cb, 64, 64);
  auto blocks_seen = [&] {
    std::lock_guard lock(m);
    return seen.empty() ? int64_t{0} : seen.back().blocks;
  };
  auto wait_blocks = [&](int64_t n) {
    for (int i = 0; i < 6000 && blocks_seen() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return blocks_seen() >= n;
  };
  engine.start("a red fox", 3);
  ASSERT_TRUE(wait_blocks(2));
  engine.switch_prompt("a blue whale");
  ASSERT_TRUE(wait_blocks(5));
  engine.stop();

  std::lock_guard lock(m);
  bool switch_block_seen = false;
  for (const EngineStats& s : seen) {
    // The model's regions and the decode, largest first, all within the block.
    for (const char* name : {"gemm", "self_attention", "cross_attention", "decode"})
      EXPECT_TRUE(has_region(s, name)) << name << " in block " << s.blocks;
    for (size_t i = 0; i < s.regions.size(); ++i) {
      EXPECT_GE(s.regions[i].ms, 0) << s.regions[i].name;
      if (i > 0) {
        EXPECT_LE(s.regions[i].ms, s.regions[i - 1].ms) << "not sorted";
      }
    }
    EXPECT_GE(s.uncovered_fraction, -1e-6);
    EXPECT_LE(s.uncovered_fraction, 1.0);
    switch_block_seen = switch_block_seen || s.history.blocks().back().prompt_switch;
  }
  EXPECT_TRUE(switch_block_seen);
}

}  // namespace
}  // namespace longlive::test
