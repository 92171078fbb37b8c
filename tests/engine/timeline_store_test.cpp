// The Performance's compact timeline store gives back every event as it was appended, and keeps
// each text once however many events name it.
#include "engine/timeline_store.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace longlive {
namespace {

TimelineEvent at(EventKind kind, int64_t block) {
  TimelineEvent e;
  e.kind = kind;
  e.block = block;
  e.time_ms = 12.5 * static_cast<double>(block) + 0.25;
  return e;
}

// One event of every kind, every field of its kind set (and a few set where the kind has no use
// for them: the store keeps what it was given).
std::vector<TimelineEvent> every_kind() {
  std::vector<TimelineEvent> events;
  TimelineEvent start = at(EventKind::start, 0);
  start.mix = PromptMix::single("a red fox in the snow");
  start.seed = 0xfeedfacecafebeefULL;
  events.push_back(start);
  TimelineEvent cut = at(EventKind::cut, 2);
  cut.mix = {{{"a whale", 0.25}, {"a lighthouse", 0.5}, {"fog", 0.125}, {"a fox", 0.125}},
             Interpolation::linear};
  events.push_back(cut);
  TimelineEvent transition = at(EventKind::transition, 3);
  transition.mix = {{{"a whale", 0.7}, {"a red fox in the snow", 0.3}}, Interpolation::slerp};
  transition.transition = {
      .blocks = 4, .interpolation = Interpolation::linear, .recache_at_end = true};
  events.push_back(transition);
  TimelineEvent preset = at(EventKind::preset, 5);
  preset.preset = "turbo";
  events.push_back(preset);
  TimelineEvent lora = at(EventKind::lora, 5);
  lora.lora = "grain";
  lora.lora_file = "/loras/grain.safetensors";
  lora.strength = 0.75;
  events.push_back(lora);
  events.push_back(at(EventKind::lora_bake, 6));
  events.push_back(at(EventKind::lora_unload, 6));
  TimelineEvent vace = at(EventKind::vace, 7);
  vace.vace = {
      .source = {.kind = InputKind::video, .path = "in.mp4", .offset = 16, .preprocess = "edges"},
      .mode = "inpaint",
      .scale = 0.8,
      .reference = "ref.png",
      .mask = "mask.png"};
  events.push_back(vace);
  TimelineEvent vace_scale = at(EventKind::vace_scale, 8);
  vace_scale.strength = 1.5;
  events.push_back(vace_scale);
  events.push_back(at(EventKind::vace_off, 9));
  TimelineEvent v2v = at(EventKind::v2v, 9);
  v2v.v2v = {.source = {.kind = InputKind::camera, .path = "/dev/video0", .format = "v4l2"},
             .strength = 0.4};
  v2v.mix = PromptMix::single("kept with the input request too");
  events.push_back(v2v);
  TimelineEvent v2v_strength = at(EventKind::v2v_strength, 10);
  v2v_strength.strength = 0.9;
  events.push_back(v2v_strength);
  events.push_back(at(EventKind::v2v_off, 11));
  events.push_back(at(EventKind::pause, 12));
  events.push_back(at(EventKind::resume, 12));
  TimelineEvent odd = at(EventKind::cut, 13);  // fields another kind uses: kept as given
  odd.mix = PromptMix::single("a whale");
  odd.preset = "balanced";
  odd.seed = 7;
  odd.strength = 0.5;
  events.push_back(odd);
  events.push_back(at(EventKind::stop, 14));
  return events;
}

TEST(TimelineStore, GivesBackEveryEventAsAppended) {
  Timeline header;
  header.model = "tiny-random";
  header.preset = "balanced";
  header.height = 48;
  header.width = 80;
  header.blocks = 99;                                // not taken: the store counts its own blocks
  header.events.push_back(at(EventKind::start, 0));  // not taken either
  TimelineStore store;
  store.reset(header);
  EXPECT_TRUE(store.empty());
  const auto events = every_kind();
  for (const auto& e : events) store.append(e);
  for (int i = 0; i < 15; ++i) store.count_block();

  const Timeline t = store.timeline();
  EXPECT_EQ(t.model, "tiny-random");
  EXPECT_EQ(t.preset, "balanced");
  EXPECT_EQ(t.height, 48);
  EXPECT_EQ(t.width, 80);
  EXPECT_EQ(t.blocks, 15);
  EXPECT_EQ(store.events(), events.size());
  ASSERT_EQ(t.events.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i)
    EXPECT_TRUE(t.events[i] == events[i])
        << "event " << i << " (" << to_string(events[i].kind) << ")";
  // And as the file says it.
  Timeline expected = header;
  expected.blocks = 15;
  expected.events = events;
  EXPECT_EQ(to_json(t).dump(), to_json(expected).dump());
}

TEST(TimelineStore, KeepsEachTextOnce) {
  TimelineStore store;
  store.reset({});
  const char* prompts[] = {"a red fox in the snow, at dawn, photographed from far away",
                           "a blue whale gliding in the deep ocean, light from above",
                           "a lighthouse in a storm at night, waves over the rocks"};
  for (int64_t b = 0; b < 3000; ++b) {
    TimelineEvent e = at(b % 2 ? EventKind::cut : EventKind::transition, b);
    e.mix = {{{prompts[b % 3], 0.6}, {prompts[(b + 1) % 3], 0.4}}, Interpolation::slerp};
    if (b % 50 == 0) {
      e = at(EventKind::preset, b);
      e.preset = b % 100 ? "turbo" : "balanced";
    }
    store.append(e);
  }
  EXPECT_EQ(store.texts(), 5u);  // three prompts, two preset names
  const Timeline t = store.timeline();
  ASSERT_EQ(t.events.size(), 3000u);
  EXPECT_EQ(t.events[2999].mix.prompts[0].text, prompts[2999 % 3]);
  EXPECT_EQ(t.events[2950].preset, "turbo");
  EXPECT_EQ(t.events[2900].preset, "balanced");
  EXPECT_EQ(t.events[2901].mix.prompts[1].text, prompts[2902 % 3]);

  store.reset({});  // a new video keeps nothing of the last
  EXPECT_TRUE(store.empty());
  EXPECT_EQ(store.texts(), 0u);
  EXPECT_EQ(store.blocks(), 0);
  EXPECT_TRUE(store.timeline().events.empty());
}

}  // namespace
}  // namespace longlive
