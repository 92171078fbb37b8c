#pragma once
// The block-latency history the studio's overlay plots: the last N blocks of a session with what
// happened at each (prompt switch, transition, preset change). The Engine keeps one per session;
// a preset change restarts the video but not the history (the change is marked instead), so the
// plot shows the latency before and after it side by side.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace longlive {

struct BlockSample {
  double ms = 0;               // wall time of the block (command to DiT done)
  bool prompt_switch = false;  // first block after a cut or the start of a transition
  bool in_transition = false;  // conditioned on an interpolated prompt
  std::string preset_change;   // the new preset's name on the first block under it, else empty
};

class LatencyHistory {
 public:
  static constexpr size_t kDefaultCapacity = 200;
  explicit LatencyHistory(size_t capacity = kDefaultCapacity);

  void add(BlockSample sample);  // drops the oldest beyond capacity
  void clear();

  const std::deque<BlockSample>& blocks() const { return blocks_; }  // oldest first
  size_t size() const { return blocks_.size(); }
  bool empty() const { return blocks_.empty(); }
  size_t capacity() const { return capacity_; }
  int64_t added() const { return added_; }  // since the last clear(), dropped ones included

  std::vector<float> ms() const;  // for plotting
  int prompt_switches() const;
  int transition_blocks() const;
  int preset_changes() const;

 private:
  size_t capacity_;
  std::deque<BlockSample> blocks_;
  int64_t added_ = 0;
};

}  // namespace longlive
