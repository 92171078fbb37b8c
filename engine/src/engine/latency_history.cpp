#include "longlive/profiler.h"

#include <algorithm>

namespace longlive {

LatencyHistory::LatencyHistory(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

void LatencyHistory::add(BlockSample sample) {
  blocks_.push_back(std::move(sample));
  ++added_;
  while (blocks_.size() > capacity_) blocks_.pop_front();
}

void LatencyHistory::clear() {
  blocks_.clear();
  added_ = 0;
}

std::vector<float> LatencyHistory::ms() const {
  std::vector<float> values;
  values.reserve(blocks_.size());
  for (const BlockSample& b : blocks_) values.push_back(static_cast<float>(b.ms));
  return values;
}

int LatencyHistory::prompt_switches() const {
  return static_cast<int>(std::count_if(blocks_.begin(), blocks_.end(),
                                        [](const BlockSample& b) { return b.prompt_switch; }));
}

int LatencyHistory::transition_blocks() const {
  return static_cast<int>(std::count_if(blocks_.begin(), blocks_.end(),
                                        [](const BlockSample& b) { return b.in_transition; }));
}

int LatencyHistory::preset_changes() const {
  return static_cast<int>(std::count_if(blocks_.begin(), blocks_.end(), [](const BlockSample& b) {
    return !b.preset_change.empty();
  }));
}

}  // namespace longlive
