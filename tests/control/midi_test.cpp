// MIDI bindings without hardware: the learn state machine, what bound controllers and notes send,
// and the bindings file (round trip and strict errors).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/midi.h"
#include "longlive/style_lora.h"

#ifdef LONGLIVE_WITH_ALSA
#include <alsa/asoundlib.h>

#include "longlive/midi_input.h"
#endif

namespace longlive::test {
namespace {

using Type = MidiEvent::Type;
const MidiTarget kGlow{MidiTarget::Kind::lora, "glow", 0};
const MidiTarget kSlot1{MidiTarget::Kind::prompt, {}, 1};

MidiEvent cc(int channel, int number, int value) {
  return {Type::control_change, channel, number, value};
}
MidiEvent note(int channel, int number, int velocity) {
  return {Type::note_on, channel, number, velocity};
}

TEST(MidiLearn, ArmedFaderBindsTheNextController) {
  MidiBindings m;
  EXPECT_TRUE(m.handle(cc(0, 21, 64)).commands.empty());  // nothing bound yet
  m.arm(kGlow);
  EXPECT_EQ(m.armed(), kGlow);
  // A key does not bind a fader: still armed, nothing sent.
  auto r = m.handle(note(0, 60, 100));
  EXPECT_FALSE(r.learned);
  EXPECT_TRUE(r.commands.empty());
  EXPECT_TRUE(m.armed());
  r = m.handle(cc(2, 21, 90));
  ASSERT_TRUE(r.learned);
  EXPECT_EQ(*r.learned, (MidiBinding{kGlow, 2, 21}));
  EXPECT_TRUE(r.commands.empty());  // the learning move itself sends nothing
  EXPECT_FALSE(m.armed());

  r = m.handle(cc(2, 21, 127));
  ASSERT_EQ(r.commands.size(), 1u);
  EXPECT_EQ(r.commands[0].kind, ControlCommand::Kind::lora_strength);
  EXPECT_EQ(r.commands[0].name, "glow");
  EXPECT_DOUBLE_EQ(r.commands[0].value, 1.5);  // full travel = kMaxLoraStrength
  EXPECT_DOUBLE_EQ(m.handle(cc(2, 21, 0)).commands[0].value, 0.0);
  EXPECT_DOUBLE_EQ(m.handle(cc(2, 21, 254 / 3)).commands[0].value, 84 / 127.0 * 1.5);
  EXPECT_TRUE(m.handle(cc(1, 21, 64)).commands.empty());  // other channel
  EXPECT_TRUE(m.handle(cc(2, 22, 64)).commands.empty());  // other controller
}

TEST(MidiLearn, RelearningReplacesBothTheTargetsAndTheControlsBinding) {
  MidiBindings m;
  const MidiTarget ink{MidiTarget::Kind::lora, "ink", 0};
  m.bind({kGlow, 0, 21});
  m.bind({ink, 0, 22});
  m.arm(kGlow);
  m.handle(cc(0, 22, 1));  // glow moves to CC 22, which ink loses
  EXPECT_EQ(m.bindings(), (std::vector<MidiBinding>{{kGlow, 0, 22}}));
  m.arm(ink);
  m.cancel();
  EXPECT_FALSE(m.handle(cc(0, 23, 5)).learned);
  m.unbind(kGlow);
  EXPECT_TRUE(m.bindings().empty());
}

TEST(MidiLearn, NotesFirePromptsOfThePromptSet) {
  MidiBindings m;
  m.set_prompt_set({{{"a red fox", 1}, {"a blue whale", 1}}, Interpolation::linear});
  m.arm(kSlot1);
  EXPECT_FALSE(m.handle(cc(0, 21, 5)).learned);    // a controller does not bind a slot
  EXPECT_FALSE(m.handle(note(0, 60, 0)).learned);  // velocity 0 is a note-off
  ASSERT_TRUE(m.handle(note(0, 60, 100)).learned);
  auto r = m.handle(note(0, 60, 90));
  ASSERT_EQ(r.commands.size(), 1u);
  EXPECT_EQ(r.commands[0].kind, ControlCommand::Kind::cut);
  EXPECT_EQ(r.commands[0].mix, PromptMix::single("a blue whale"));
  EXPECT_TRUE(m.handle({Type::note_off, 0, 60, 0}).commands.empty());
  EXPECT_TRUE(m.handle(note(0, 60, 0)).commands.empty());

  m.set_prompt_transition({.blocks = 4, .interpolation = Interpolation::linear});
  r = m.handle(note(0, 60, 90));
  ASSERT_EQ(r.commands.size(), 1u);
  EXPECT_EQ(r.commands[0].kind, ControlCommand::Kind::transition);
  EXPECT_EQ(r.commands[0].transition.blocks, 4);

  m.bind({{MidiTarget::Kind::prompt, {}, 7}, 0, 61});  // past the set's end: ignored
  EXPECT_TRUE(m.handle(note(0, 61, 90)).commands.empty());
}

// The LoRA panel's Bake button learns a key like a prompt slot; its note-on asks for a bake, and
// a key bound to it no longer fires a prompt (one binding per control).
TEST(MidiLearn, AKeyBakes) {
  const MidiTarget bake{MidiTarget::Kind::bake, {}, 0};
  MidiBindings m;
  m.set_prompt_set({{{"a red fox", 1}}, Interpolation::linear});
  m.bind({{MidiTarget::Kind::prompt, {}, 0}, 0, 48});
  m.arm(bake);
  EXPECT_FALSE(m.handle(cc(0, 21, 5)).learned);  // a controller does not bind the button
  const auto learned = m.handle(note(0, 48, 100)).learned;
  ASSERT_TRUE(learned);
  EXPECT_EQ(learned->target, bake);
  const auto r = m.handle(note(0, 48, 90));
  ASSERT_EQ(r.commands.size(), 1u);
  EXPECT_EQ(r.commands[0].kind, ControlCommand::Kind::lora_bake);
  EXPECT_TRUE(m.handle(note(0, 48, 0)).commands.empty());  // note-off
  EXPECT_EQ(m.bindings().size(), 1u);                      // the prompt slot's key moved to bake
  EXPECT_EQ(describe(bake), "LoRA bake");
}

TEST(MidiBindingsFile, RoundTripsAndRejectsBadFields) {
  MidiBindings m;
  m.bind({kGlow, 3, 21});
  m.bind({kSlot1, 9, 60});
  m.bind({{MidiTarget::Kind::bake, {}, 0}, 9, 48});
  const auto path = temp_dir("midi") / "bindings.json";
  m.save(path);
  MidiBindings loaded;
  loaded.load(path);
  EXPECT_EQ(loaded.bindings(), m.bindings());
  EXPECT_EQ(m.to_json()["bindings"][0],
            nlohmann::json({{"lora", "glow"}, {"channel", 3}, {"cc", 21}}));

  auto error_of = [](const std::string& text) {
    MidiBindings b;
    try {
      b.load_json(text, "b.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::pair<const char*, const char*> cases[] = {
      {R"({"version": 1, "bindings": [{"lora": "glow", "channel": 0, "cc": 130}]})",
       "b.json: bindings[0].cc: 130 is outside 0..127"},
      {R"({"version": 1, "bindings": [{"lora": "glow", "channel": 16, "cc": 1}]})",
       "bindings[0].channel: 16 is outside 0..15"},
      {R"({"version": 1, "bindings": [{"lora": "glow", "prompt": 1, "channel": 0, "cc": 1}]})",
       "exactly one of"},
      {R"({"version": 1, "bindings": [{"prompt": 1, "channel": 0, "cc": 1}]})",
       "bindings[0].cc: unknown field"},
      {R"({"version": 1, "bindings": [{"prompt": 1, "channel": 0}]})", "bindings[0].note: missing"},
      {R"({"version": 1, "bindings": [{"bake": false, "channel": 0, "note": 1}]})",
       "bindings[0].bake: expected true"},
      {R"({"version": 1, "bindings": [{"bake": true, "prompt": 2, "channel": 0, "note": 1}]})",
       "exactly one of"},
      {R"({"version": 2, "bindings": []})", "version: 2 is newer"},
      {R"({"version": 1, "bindings": [], "extra": 1})", "extra: unknown field"},
  };
  for (const auto& [text, expected] : cases)
    EXPECT_NE(error_of(text).find(expected), std::string::npos) << error_of(text);
}

#ifdef LONGLIVE_WITH_ALSA
// A second sequencer client plays a controller: its CC reaches our port and, through the
// bindings, becomes a fader command. Needs the ALSA sequencer device (skipped without it).
TEST(MidiInput, SequencerEventsReachTheBindings) {
  if (!std::filesystem::exists("/dev/snd/seq"))
    GTEST_SKIP() << "no ALSA sequencer here (/dev/snd/seq; modprobe snd-seq)";
  MidiBindings bindings;
  bindings.bind({kGlow, 0, 21});
  std::mutex m;
  std::vector<ControlCommand> sent;
  MidiInput input([&](const MidiEvent& e) {
    auto r = bindings.handle(e);
    std::lock_guard lock(m);
    sent.insert(sent.end(), r.commands.begin(), r.commands.end());
  });
  snd_seq_t* controller = nullptr;
  ASSERT_EQ(snd_seq_open(&controller, "default", SND_SEQ_OPEN_OUTPUT, 0), 0);
  const int out = snd_seq_create_simple_port(controller, "knobs",
                                             SND_SEQ_PORT_CAP_READ | SND_SEQ_PORT_CAP_SUBS_READ,
                                             SND_SEQ_PORT_TYPE_MIDI_GENERIC);
  ASSERT_GE(out, 0);
  input.connect_from(snd_seq_client_id(controller), out);
  snd_seq_event_t ev;
  snd_seq_ev_clear(&ev);
  snd_seq_ev_set_source(&ev, out);
  snd_seq_ev_set_subs(&ev);
  snd_seq_ev_set_direct(&ev);
  snd_seq_ev_set_controller(&ev, 0, 21, 127);
  ASSERT_GE(snd_seq_event_output_direct(controller, &ev), 0);
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lock(m);
      if (!sent.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  snd_seq_close(controller);
  std::lock_guard lock(m);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].name, "glow");
  EXPECT_DOUBLE_EQ(sent[0].value, 1.5);
}
#endif

}  // namespace
}  // namespace longlive::test
