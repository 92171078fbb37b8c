#pragma once
// The session timeline as a Performance keeps it while a video runs: one fixed-size record per
// event, every text (prompts, preset and LoRA names and files) kept once however many events
// name it, and the rare events with input requests (VACE, video-to-video) whole. A timeline()
// builds the public Timeline from it.
//
// Why: a stage session switches prompts every few seconds for hours, and a TimelineEvent with
// its own prompt strings is ~0.7 KiB plus a few small heap blocks per event; those blocks, kept
// for the whole video, pin the worker's malloc arena between the block's transient allocations
// (fragmentation the hour-long soak measured). A record here is ~100 bytes with no heap block of
// its own: the vectors grow geometrically, and past 64 KiB they are mappings of their own.
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "longlive/timeline.h"

namespace longlive {

class TimelineStore {
 public:
  // A new timeline: its header (model, preset, size; `events` and `blocks` are not taken).
  void reset(const Timeline& header);
  void append(const TimelineEvent& event);
  void count_block() { ++blocks_; }
  int64_t blocks() const { return blocks_; }
  bool empty() const { return records_.empty(); }
  size_t events() const { return records_.size(); }
  // The timeline so far, events in order, equal field by field to those appended.
  Timeline timeline() const;
  // Distinct texts kept (for tests and the soak's figures).
  size_t texts() const { return texts_.size(); }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Record {
    int64_t block = 0;
    double time_ms = 0;
    double strength = 0;
    uint64_t seed = 0;
    int64_t transition_blocks = 0;
    uint32_t first_prompt = 0;  // into prompts_
    uint32_t prompt_count = 0;
    uint32_t preset = kNone;  // text ids
    uint32_t lora = kNone;
    uint32_t lora_file = kNone;
    uint32_t whole = kNone;  // into whole_: an event with input requests
    EventKind kind = EventKind::start;
    Interpolation blend = Interpolation::linear;
    Interpolation transition_interpolation = Interpolation::slerp;
    bool recache_at_end = false;
  };
  struct Prompt {
    uint32_t text = 0;
    double weight = 0;
  };

  uint32_t intern(const std::string& text);  // kNone for the empty text
  const std::string& text(uint32_t id) const;

  Timeline header_;
  int64_t blocks_ = 0;
  std::vector<Record> records_;
  std::vector<Prompt> prompts_;
  std::deque<std::string> texts_;  // a deque: the ids_ views stay valid as it grows
  std::unordered_map<std::string_view, uint32_t> ids_;
  std::vector<TimelineEvent> whole_;
};

}  // namespace longlive
