// Timeline JSON: round trip, strict loading that names the bad field, version and preset checks.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/timeline.h"

namespace longlive::test {
namespace {

using nlohmann::json;

json valid() {
  return json::parse(R"({
    "version": 1, "model": "tiny-random", "preset": "balanced", "height": 64, "width": 64,
    "blocks": 6,
    "events": [
      {"block": 0, "time_ms": 0, "type": "start", "seed": 42,
       "prompts": [{"text": "a red fox", "weight": 1}], "blend": "linear"},
      {"block": 2, "time_ms": 900.5, "type": "transition",
       "prompts": [{"text": "a red fox", "weight": 1}, {"text": "a blue whale", "weight": 3}],
       "blend": "slerp",
       "transition": {"blocks": 3, "interpolation": "linear", "recache": true}},
      {"block": 3, "type": "cut", "prompts": [{"text": "a forest"}]},
      {"block": 4, "type": "preset", "preset": "turbo"},
      {"block": 4, "type": "pause"},
      {"block": 4, "type": "resume"},
      {"block": 6, "type": "stop"}
    ]})");
}

std::string error_of(const json& j) {
  try {
    parse_timeline(j.dump(), "t.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Timeline, ParsesTheDocumentedSchemaAndRoundTrips) {
  const Timeline t = parse_timeline(valid().dump(), "t.json");
  ASSERT_EQ(t.events.size(), 7u);
  EXPECT_EQ(t.events[0].seed, 42u);
  EXPECT_EQ(t.events[1].kind, EventKind::transition);
  EXPECT_EQ(t.events[1].mix.prompts[1].weight, 3);
  EXPECT_EQ(t.events[1].mix.blend, Interpolation::slerp);
  EXPECT_EQ(t.events[1].transition.blocks, 3);
  EXPECT_EQ(t.events[1].transition.interpolation, Interpolation::linear);
  EXPECT_TRUE(t.events[1].transition.recache_at_end);
  EXPECT_EQ(t.events[2].mix.prompts[0].weight, 1);  // default weight
  EXPECT_EQ(t.events[3].preset, "turbo");
  EXPECT_EQ(t.presets(), (std::vector<std::string>{"balanced", "turbo"}));
  EXPECT_EQ(t.events[1].mix.label(), "0.25 a red fox + 0.75 a blue whale");

  const auto path = temp_dir("timeline") / "t.json";
  save_timeline(path, t);
  const Timeline back = load_timeline(path);
  EXPECT_EQ(to_json(back), to_json(t));
  ASSERT_EQ(back.events.size(), t.events.size());
  for (size_t i = 0; i < t.events.size(); ++i) {
    EXPECT_EQ(back.events[i].kind, t.events[i].kind);
    EXPECT_EQ(back.events[i].block, t.events[i].block);
    EXPECT_EQ(back.events[i].mix, t.events[i].mix);
  }
}

TEST(Timeline, MalformedFilesNameTheField) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j.erase("version"); }, "t.json: version: missing"},
      {[](json& j) { j["version"] = "1"; }, "t.json: version: expected an integer"},
      {[](json& j) { j["colour"] = 1; }, "t.json: colour: unknown field"},
      {[](json& j) { j["height"] = 50; }, "height"},
      {[](json& j) { j["events"][0]["prompts"][0]["weight"] = "x"; },
       "t.json: events[0].prompts[0].weight: expected a number"},
      {[](json& j) { j["events"][1]["prompts"][0]["weight"] = -1; },
       "events[1].prompts: blend: weight -1 of prompt 1"},
      {[](json& j) { j["events"][1]["transition"]["blocks"] = -2; },
       "t.json: events[1].transition.blocks: -2 must be >= 0"},
      {[](json& j) { j["events"][1]["transition"]["interpolation"] = "cubic"; },
       "events[1].transition.interpolation: 'cubic'"},
      {[](json& j) { j["events"][1]["transition"]["speed"] = 2; },
       "events[1].transition.speed: unknown field"},
      {[](json& j) { j["events"][2]["type"] = "jump"; }, "events[2].type: 'jump'"},
      {[](json& j) { j["events"][2]["block"] = 1; }, "events[2].block: 1 is before"},
      {[](json& j) { j["events"][2]["block"] = 9; }, "events[2].block: 9 is past"},
      {[](json& j) { j["events"][2]["prompts"] = json::array(); }, "events[2].prompts"},
      {[](json& j) { j["events"][2]["prompts"][0]["text"] = "  "; },
       "events[2].prompts[0].text: the prompt is empty"},
      {[](json& j) { j["events"][0]["seed"] = -1; }, "events[0].seed"},
      {[](json& j) { j["events"][0]["type"] = "cut"; }, "events[0].type: the first event"},
      {[](json& j) { j["events"][3].erase("preset"); }, "events[3].preset: missing"},
      {[](json& j) {
         j["events"].push_back({{"block", 6}, {"type", "pause"}});
       },
       "events[7]: an event after the stop"},
  };
  for (const auto& c : cases) {
    json j = valid();
    c.edit(j);
    const std::string what = error_of(j);
    EXPECT_NE(what.find(c.expected), std::string::npos)
        << "expected '" << c.expected << "' in: " << what;
  }
  EXPECT_THROW(parse_timeline("{\"version\": 1,", "t.json"), FormatError);
}

TEST(Timeline, NewerVersionsAreRejected) {
  json j = valid();
  j["version"] = kTimelineVersion + 1;
  j["future_field"] = true;  // the version is checked before anything the future might add
  EXPECT_NE(error_of(j).find(fmt::format("t.json: version: {} is newer than this build reads ({})",
                                         kTimelineVersion + 1, kTimelineVersion)),
            std::string::npos)
      << error_of(j);
}

TEST(Timeline, MissingPresetFailsClearly) {
  json j = valid();
  j["events"][3]["preset"] = "warp_speed";
  const Timeline t = parse_timeline(j.dump(), "t.json");
  const std::filesystem::path presets = std::filesystem::path(LONGLIVE_TEST_SOURCE_DIR) / "presets";
  try {
    check_presets(
        t, [&](const std::string& n) { return find_preset(presets, n); }, "t.json");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("t.json: events[3].preset: preset 'warp_speed'"), std::string::npos)
        << what;
    EXPECT_NE(what.find("balanced"), std::string::npos) << what;  // lists what exists
  }
  check_presets(
      parse_timeline(valid().dump(), "t.json"),
      [&](const std::string& n) { return find_preset(presets, n); }, "t.json");
}

}  // namespace
}  // namespace longlive::test

namespace longlive::test {
namespace {

TEST(PromptSet, RoundTripsAndRejectsBadEntries) {
  PromptSet set{{{"a red fox", 1}, {"a blue whale", 0.5}, {"snow", 0}}, Interpolation::slerp};
  const auto path = temp_dir("prompt_set") / "set.json";
  save_prompt_set(path, set);
  const PromptSet back = load_prompt_set(path);
  EXPECT_EQ(back.prompts, set.prompts);
  EXPECT_EQ(back.blend, Interpolation::slerp);

  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_prompt_set(text, "set.json");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_NE(error_of(R"({"version":1,"prompts":[{"text":"a"},{"text":"b","weight":-2}]})")
                .find("set.json: prompts[1].weight: -2 must be finite and >= 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"prompts":[]})").find("set.json: prompts: expected"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":9,"prompts":[{"text":"a"}]})").find("version: 9 is newer"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"prompts":[{"text":"a","colour":1}]})")
                .find("prompts[0].colour: unknown field"),
            std::string::npos);
}

TEST(PromptSet, RecentPromptsAreUniqueNewestFirstAndBounded) {
  std::vector<std::string> recent;
  for (const char* p : {"a", "b", "c", "a"}) remember_prompt(recent, p, 3);
  EXPECT_EQ(recent, (std::vector<std::string>{"a", "c", "b"}));
  remember_prompt(recent, "d", 3);
  EXPECT_EQ(recent, (std::vector<std::string>{"d", "a", "c"}));
}

}  // namespace
}  // namespace longlive::test

namespace longlive::test {
namespace {

// Both readers share the document parsing and the version check: the same errors, naming the
// file, for a timeline and a prompt set.
TEST(JsonFiles, BothReadersRejectNonJsonAndNewerVersionsTheSameWay) {
  struct Reader {
    std::string origin;
    std::function<void(const std::string&)> read;
    int version;  // the newest each reads
  };
  const std::vector<Reader> readers = {
      {"timeline.json", [](const std::string& t) { parse_timeline(t, "timeline.json"); },
       kTimelineVersion},
      {"set.json", [](const std::string& t) { parse_prompt_set(t, "set.json"); },
       kPromptSetVersion},
  };
  for (const auto& [origin, read, version] : readers) {
    auto message = [&, &read = read](const std::string& text) -> std::string {
      try {
        read(text);
      } catch (const FormatError& e) {
        return std::string("FormatError: ") + e.what();
      } catch (const ConfigError& e) {
        return std::string("ConfigError: ") + e.what();
      }
      return "(accepted)";
    };
    const std::string not_json = message("{\"version\": 1,");
    EXPECT_EQ(not_json.rfind("FormatError: " + origin + ": not valid JSON: ", 0), 0u) << not_json;
    // Found by fuzz_timeline: a number too large for a double threw nlohmann's out_of_range
    // past both readers (the studio's file menu would have shown an internal error).
    const std::string huge = message(R"({"version": 1, "blocks": 9e99999})");
    EXPECT_EQ(huge.rfind("FormatError: " + origin + ": not valid JSON: ", 0), 0u) << huge;
    const std::string newer = message(R"({"version": 7, "from_the_future": true})");
    EXPECT_EQ(newer, "ConfigError: " + origin + ": version: 7 is newer than this build reads (" +
                         std::to_string(version) + "); update LongLive Studio");
    const std::string no_version = message(R"({"prompts": []})");
    EXPECT_EQ(no_version, "ConfigError: " + origin + ": version: missing");
  }
}

}  // namespace
}  // namespace longlive::test
