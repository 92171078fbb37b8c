#include "timeline_store.h"

#include <limits>

#include "longlive/error.h"

namespace longlive {

namespace {
bool has_input_request(const TimelineEvent& e) {
  return !(e.vace == VaceRequest{}) || !(e.v2v == V2vRequest{});
}

template <class Count>
uint32_t checked_index(Count count, const char* what) {
  if (count >= static_cast<Count>(std::numeric_limits<uint32_t>::max()))
    throw Error(std::string("session timeline: too many ") + what);
  return static_cast<uint32_t>(count);
}
}  // namespace

void TimelineStore::reset(const Timeline& header) {
  header_ = header;
  header_.events.clear();
  header_.blocks = 0;
  blocks_ = 0;
  records_.clear();
  prompts_.clear();
  ids_.clear();
  texts_.clear();
  whole_.clear();
}

uint32_t TimelineStore::intern(const std::string& text) {
  if (text.empty()) return kNone;
  if (const auto it = ids_.find(text); it != ids_.end()) return it->second;
  const uint32_t id = checked_index(texts_.size(), "distinct texts");
  texts_.push_back(text);
  ids_.emplace(texts_.back(), id);
  return id;
}

const std::string& TimelineStore::text(uint32_t id) const {
  static const std::string empty;
  return id == kNone ? empty : texts_[id];
}

void TimelineStore::append(const TimelineEvent& e) {
  Record r;
  r.kind = e.kind;
  if (has_input_request(e)) {  // rare (an input set): kept whole
    r.whole = checked_index(whole_.size(), "input events");
    whole_.push_back(e);
    records_.push_back(r);
    return;
  }
  r.block = e.block;
  r.time_ms = e.time_ms;
  r.strength = e.strength;
  r.seed = e.seed;
  r.transition_blocks = e.transition.blocks;
  r.transition_interpolation = e.transition.interpolation;
  r.recache_at_end = e.transition.recache_at_end;
  r.blend = e.mix.blend;
  r.first_prompt = checked_index(prompts_.size(), "prompts");
  r.prompt_count = checked_index(e.mix.prompts.size(), "prompts in one event");
  for (const WeightedPrompt& p : e.mix.prompts) prompts_.push_back({intern(p.text), p.weight});
  r.preset = intern(e.preset);
  r.lora = intern(e.lora);
  r.lora_file = intern(e.lora_file);
  records_.push_back(r);
}

Timeline TimelineStore::timeline() const {
  Timeline t = header_;
  t.blocks = blocks_;
  t.events.reserve(records_.size());
  for (const Record& r : records_) {
    if (r.whole != kNone) {
      t.events.push_back(whole_[r.whole]);
      continue;
    }
    TimelineEvent& e = t.events.emplace_back();
    e.kind = r.kind;
    e.block = r.block;
    e.time_ms = r.time_ms;
    e.strength = r.strength;
    e.seed = r.seed;
    e.transition = {.blocks = r.transition_blocks,
                    .interpolation = r.transition_interpolation,
                    .recache_at_end = r.recache_at_end};
    e.mix.blend = r.blend;
    e.mix.prompts.reserve(r.prompt_count);
    for (uint32_t i = 0; i < r.prompt_count; ++i) {
      const Prompt& p = prompts_[r.first_prompt + i];
      e.mix.prompts.push_back({text(p.text), p.weight});
    }
    e.preset = text(r.preset);
    e.lora = text(r.lora);
    e.lora_file = text(r.lora_file);
  }
  return t;
}

}  // namespace longlive
