#pragma once
// Performance: a live or replayed generation session driven by control commands. Every command
// (start, cut, transition, blend, preset, pause, resume, stop) is applied before the next block
// and recorded into a Timeline; replay() feeds a timeline's events back through the same methods,
// so the same model, preset and seed give bit-identical latents. The Engine runs one on its
// worker thread; `longlive render` runs one on the CLI's thread. Not thread-safe.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "longlive/preset.h"
#include "longlive/prompt_mix.h"
#include "longlive/ranked_session.h"
#include "longlive/session.h"
#include "longlive/style_lora.h"
#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace c10 {
struct Event;
}

namespace longlive {

class TimelineStore;  // engine/src/engine/timeline_store.h

class Performance {
 public:
  Performance(ModelSpec model, Preset preset, int height = 0, int width = 0);
  // Opens its sessions through `factory` (shared with other users of the same model).
  Performance(std::shared_ptr<SessionFactory> factory, Preset preset, int height = 0,
              int width = 0);
  ~Performance();

  // Starts (or restarts) a video. Begins a new timeline unless one is active (then it is recorded
  // as a restart within it). Builds the session on first use.
  void start(const PromptMix& mix, uint64_t seed);
  void cut(const PromptMix& mix);  // hard cut: re-cache under the new conditioning
  // Transition to the mix over options.blocks blocks (0 = cut).
  void transition(const PromptMix& mix, const TransitionOptions& options);
  // Moves the session to the preset (SessionFactory::change_preset): the video goes on from its
  // current frame, with the text encoder, prompt cache and unchanged weights kept.
  PresetChange set_preset(const Preset& preset);
  // Video size of the next start (0 x 0: the preset's, 64x64 for the tiny model), e.g. a
  // timeline's own size before replaying it. Only while no video is active (Error otherwise); a
  // session of another size is dropped and rebuilt at the next start.
  void set_resolution(int height, int width);
  void pause();
  void resume();
  void stop();                               // ends the timeline
  void prefetch(const std::string& prompt);  // not recorded (no effect on the video)

  // Style LoRAs as faders (longlive/style_lora.h). load_lora reads and maps a LoRA file (any
  // community format) at strength 0 and returns its name: `name`, or the file's stem made unique.
  // The same file loaded again returns its existing name.
  std::string load_lora(const std::filesystem::path& file, const std::string& name = {});
  // Moves a fader from the next block on (no weight merge). ConfigError naming the LoRA for an
  // unknown name or a strength outside 0..kMaxLoraStrength.
  void set_lora_strength(const std::string& name, double strength);
  // "Bake" (docs/performing.md): merges every fader that is up, at its strength, into the
  // running DiT's weights on its device (SessionFactory::bake_style_loras), then drops those
  // faders to 0 (their side path stops; Fader::baked says what went in). From the next block,
  // recorded (a lora_bake event). ConfigError when no fader is up (nothing changes).
  BakeResult bake_loras();
  // "Unload LoRAs" (docs/performing.md): removes every loaded style LoRA from the session from
  // the next block: their faders go and the side path with them (CUDA graphs captured with it
  // are dropped, as for any change of the active LoRAs); what bakes merged stays in the weights.
  // Recorded (a lora_unload event) while a video is active, else stated by the next start.
  // ConfigError when no style LoRA is loaded (nothing changes).
  void unload_loras();
  // Unloads every style LoRA (before an exact replay of another timeline). After a bake the
  // session is dropped too, so the next start rebuilds the DiT from the unbaked host weights
  // (the way to undo a bake); Error while a video runs then (stop it first).
  void clear_loras();
  struct Fader {
    std::string name;
    std::filesystem::path file;
    std::shared_ptr<const StyleLora> lora;
    double strength = 0;
    double baked = 0;  // strength merged into the weights by bakes so far (summed)
  };
  const std::vector<Fader>& loras() const { return loras_; }
  // Drops the session after an error (the timeline ends where it was).
  void abort();

  // One stream on several ranks (sequence parallelism, docs/multi-gpu.md) from the next session
  // on, opened by RankedSession: every generator call reaches every rank, rank 0's session
  // encodes the prompts and inputs and decodes. One rank (the default) is the one-session path.
  // Only while no video is active (Error otherwise). On several ranks blocks are not given up
  // mid-way and bakes are refused (ConfigError): the ranks share the DiT's weights; a preset
  // change moves every rank (RankedSession::change_preset).
  void set_ranks(const RankPlan& plan);
  int ranks() const { return plan_.ranks; }
  // The generator whose options, stats and inputs stand for the stream (rank 0's on several
  // ranks); null before the session is open.
  StreamGenerator* generator() const;

  // VACE and video-to-video inputs (longlive/live_inputs.h, docs/vace.md). Sources are opened
  // with `opener` (FFmpeg: recorder's ffmpeg_input_opener()); camera frames are saved under
  // `capture_dir`. Call before the first input.
  void set_inputs(InputOpener opener, std::filesystem::path capture_dir);
  // Set from the next block, recorded (a camera as its capture file). ConfigError (no VACE
  // weights, bad mode or scale), IoError / FormatError (unreadable file, camera that does not
  // open): nothing changes.
  void set_vace(const VaceRequest& request);
  void clear_vace();
  void set_vace_scale(double scale);  // ConfigError without a VACE input or outside 0..2
  void set_v2v(const V2vRequest& request);
  void clear_v2v();
  void set_v2v_strength(double strength);  // ConfigError without an input or outside (0, 1]
  void clear_inputs();                     // both, before an exact replay of another timeline
  // Whether opening a session also readies the inputs' encoding (LiveInputs::warm), so that the
  // first video or camera picked starts as fast as the later ones; a failure there is a warning
  // (the pick readies them then). False (the default: `render`, which opens its inputs at once):
  // never; true: always; unset (the studio's Engine): on a GPU, when the model has VACE weights
  // and the preset reserves memory up front (memory_pool).
  void set_warm_inputs(std::optional<bool> warm) { warm_inputs_ = warm; }
  InputStatus input_status() const;
  // Waits until the camera frames used so far are in their capture files (before a timeline is
  // handed out); IoError when a write failed.
  void flush_input_captures() const;
  // Why an input was dropped since the last call (its source failed; the video went on).
  std::vector<std::string> take_input_messages() { return std::exchange(input_messages_, {}); }

  // Generates the next block ([1, F, C, h, w] latents on the device). Only while running().
  at::Tensor next_block();
  // The same, given up mid-way when `abandon` says so between denoising steps (see
  // StreamGenerator::next_block_unless): nullopt, the block not counted, the stream as before it.
  std::optional<at::Tensor> next_block_unless(const std::function<bool()>& abandon);
  // The event the last block's latents were final at (StreamGenerator::latents_ready), for the
  // live decoder to start from; null on several ranks (the latents are rank 0's, made after it),
  // on the CPU, and with LONGLIVE_DECODE_AFTER_CONTEXT_PASS=1 (the decode then waits for all
  // queued, as before 2026-12-07).
  const c10::Event* latents_ready() const;
  // Host time the last next_block*() spent feeding the inputs (frames read and captured, encoded
  // in place or the encode ahead taken and launched): the engine thread's share of an input.
  double last_inputs_ms() const { return last_inputs_ms_; }
  // Whether the next block's inputs will wait for a live camera to film their frames (the engine
  // hands out the frames decoded so far first, instead of after that wait).
  bool inputs_wait_for_frames() const;

  bool running() const { return active_ && !paused_; }
  bool active() const { return active_; }  // started and not stopped
  bool paused() const { return paused_; }
  // True when the next block continues a transition (for marking the latency plot).
  bool in_transition() const;
  // The session that encodes, decodes and profiles (rank 0's on several ranks; its own generator
  // is then released: use generator()).
  Session* session() const { return ranked_ ? &ranked_->lead() : session_.get(); }
  // The factory of session() (VACE and video encoders, export decoders).
  SessionFactory& factory() const { return ranked_ ? ranked_->lead_factory() : *factory_; }
  const Preset& preset() const { return preset_; }
  const PromptMix& mix() const { return mix_; }
  uint64_t seed() const { return seed_; }
  int64_t blocks() const;
  // The timeline so far, built for the caller from the compact store every change of it goes to
  // (under a lock: any thread may ask). An Engine hands this out instead of keeping a second
  // copy of every event (docs/reliability.md).
  Timeline timeline() const;
  bool timeline_empty() const;

  // Applies one recorded event (replay); presets are looked up by name.
  void apply(const TimelineEvent& event, const PresetLookup& presets);

 private:
  void ensure_session();
  void warm_inputs();  // after a session opens (set_warm_inputs)
  void drop_session();
  // A change of the stream, on every rank's generator.
  void each_generator(const std::function<void(StreamGenerator&)>& change);
  // An event of `kind` at the current block and time; record() appends it (under the lock).
  TimelineEvent event(EventKind kind) const;
  void record(TimelineEvent e);
  void record(EventKind kind);
  // Loads (if needed) and sets one fader, recording one lora event while a video is active.
  void set_lora(const std::string& name, const std::filesystem::path& file, double strength);
  void sync_loras();     // hands the faders to the session's generator
  void record_inputs();  // states the current inputs (a new timeline's start)

  std::shared_ptr<SessionFactory> factory_;
  Preset preset_;
  int height_, width_;
  std::unique_ptr<Session> session_;  // one rank
  RankPlan plan_;
  std::unique_ptr<RankedSession> ranked_;  // several ranks
  // Written only by the driving thread; each change holds timeline_mutex_, so timeline() may be
  // called from any thread.
  std::unique_ptr<TimelineStore> timeline_;
  mutable std::mutex timeline_mutex_;
  std::chrono::steady_clock::time_point began_;
  PromptMix mix_;  // target of the latest start/cut/transition
  std::vector<Fader> loras_;
  // Every bake so far (the faders that were up, at their strengths): a new session (another
  // size) bakes them again, and a new timeline states them.
  std::vector<std::vector<ActiveStyleLora>> bakes_;
  using BakeMoves = std::vector<std::pair<std::string, double>>;  // by fader name
  std::vector<BakeMoves> bake_moves_;                             // the bakes since the last unload
  // The faders (in load order) and bakes before each unload that followed a bake: a new
  // timeline states them (loads, bakes, the unload), so a replay merges the same weights.
  struct UnloadedLoras {
    std::vector<std::pair<std::string, std::filesystem::path>> faders;
    std::vector<BakeMoves> bakes;
  };
  std::vector<UnloadedLoras> unloaded_;
  std::unique_ptr<LiveInputs> inputs_;
  std::optional<bool> warm_inputs_ = false;  // set_warm_inputs
  std::vector<std::string> input_messages_;
  double last_inputs_ms_ = 0;
  uint64_t seed_ = 0;
  bool active_ = false;
  bool paused_ = false;
};

// Generates every block of `timeline` with `model`, applying its events where they were recorded;
// each block goes to on_block with its session (to decode it). `inputs` opens the files of
// VACE / video-to-video events (captured camera frames need none). `presets` resolves the
// timeline's preset names (check_presets is called first, so a missing preset fails before any
// block). `ranks`: the stream on several ranks (Performance::set_ranks). ConfigError when the
// events leave the video paused or stopped before its last block.
struct ReplayBlock {
  int64_t index = 0;           // block index in the timeline
  at::Tensor latents;          // [1, F, C, h, w] on the session's device
  Session* session = nullptr;  // decode with session->decoder (submit, take; reset at (re)starts)
  std::string prompt;          // label of the conditioning (PromptMix::label)
};
void replay(const Timeline& timeline, const ModelSpec& model, const PresetLookup& presets,
            const std::function<void(const ReplayBlock&)>& on_block,
            const std::string& origin = "timeline", const InputOpener& inputs = {},
            const RankPlan& ranks = {});

}  // namespace longlive
