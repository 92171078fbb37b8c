#pragma once
// Sessions and the one factory that opens them. Every front end (studio engine, `generate`,
// `bench`, `render`, exports) gets its generator, text encoder, prompt cache and live decoder from
// a SessionFactory, so a preset means the same runtime everywhere (choose_runtime), and a preset
// change can keep what does not change (SessionFactory::change_preset).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "longlive/capabilities.h"
#include "longlive/generator.h"  // GeneratorOptions (SessionFactory::StreamPreset)
#include "longlive/preset.h"
#include "longlive/prompt_mix.h"
#include "longlive/style_lora.h"
#include "longlive/wan_model.h"

namespace longlive {

class StreamGenerator;
class TextEncoder;
class PromptCache;
class AsyncDecoder;
class StreamingDecoder;
class RegionProfiler;
class WeightStore;
class CausalWanModel;
class WanVaeDecoder;
class BlackInactiveLatents;
class VaceContextEncoder;
class WanVaeEncoder;
class TaehvEncoder;
class VideoToVideo;
class VaceFrameSource;
class EncodeWorker;
struct GeneratorOptions;
struct TextEncoderOptions;

struct ModelSpec {
  bool tiny_random = false;  // CPU-sized random model for trying the app without weights
  // The 1.3B geometry with random weights (benchmarks, the GPU soak): no files and no umT5. With
  // `random_prompts` (the studio on random weights) a prompt's embeddings are random numbers
  // seeded by its text, through the usual prompt cache; without it sessions have no prompts.
  bool full_random = false;
  bool random_prompts = false;
  std::filesystem::path folder;  // real checkpoints (see missing_model_files)
  // Where to run it; default: the first CUDA device when there is one, else the CPU.
  std::optional<at::Device> device;
  // Explicit files that replace the folder search (the CLI's --weights, --lora, ...).
  std::optional<std::filesystem::path> dit_file{}, lora_file{}, text_encoder_file{},
      tokenizer_file{}, taehv_file{}, wan_vae_file{};
  double lora_alpha = 0;  // <= 0: alpha = rank
  // VACE: an explicit module file (errors in it are errors), else the folder's (see
  // find_vace_file: when absent or unusable, VACE is off with a message, nothing else). The tiny
  // random model gets random VACE weights. vace = false: never load VACE.
  std::optional<std::filesystem::path> vace_file{};
  bool vace = true;
  // With full_random: random full-size VACE blocks and a random full-size Wan VAE with its
  // encoder, so VACE inputs run at the real sizes without files (`bench --vace`'s input latency).
  // Off by default: ~1.5 GB of weights made on the host.
  bool random_vace = false;
};

// Files a model folder must hold (searched recursively); returns the ones not found.
std::vector<std::string> missing_model_files(const std::filesystem::path& folder);

// The one mapping from a preset to what runs where, for a device. On the CPU everything runs in
// float32 (ATen's CPU kernels are exact and fastest there; bf16 and fp8 are GPU formats).
struct RuntimeChoice {
  at::Device device = at::kCPU;
  at::ScalarType dit_dtype = at::kFloat;   // DiT matrices (fp8 linears sit on top of bf16)
  std::optional<at::ScalarType> kv_dtype;  // KV storage; unset = dit_dtype
  at::Device text_device = at::kCPU;
  at::ScalarType text_dtype = at::kFloat;
  DecoderKind decoder = DecoderKind::taehv;
  DitRuntime dit;  // fused kernels, fp8 linears/attention, CUDA graphs
  bool reserve_up_front = false;
  DeviceCapabilities capabilities;  // of the device, once fit_to_device() ran
  // What the device could not run of what was asked, and what runs instead, one line each
  // ("turbo_fp8: FP8 attention unavailable on sm_86 (needs sm_90+), using bf16 attention").
  std::vector<std::string> fallbacks;
};
// What the preset asks for on `device`, before the device's capabilities are known.
RuntimeChoice choose_runtime(const Preset& preset, at::Device device);
// Lowers `r` to what `caps` can run (a slower path instead of a failure), recording each
// fallback in r.fallbacks prefixed with `preset_name`.
void fit_to_device(RuntimeChoice& r, const DeviceCapabilities& caps,
                   const std::string& preset_name);

// Front-end overrides of the preset's runtime (the bench's switches).
struct SessionOverrides {
  std::optional<AttentionBackend> attention;
  std::optional<bool> fused_kernels, cuda_graphs, fp8_attention, fp8_linears;
  int force_sm = 0;  // > 0: run as on a device of this lower capability (tests every fallback)
  bool text_encoder = true;  // open (or keep) the text encoder and prompt cache
  bool live_decoder = true;  // open the preset's live decoder
};

// One model + preset, ready to generate.
struct Session {
  Preset preset;
  RuntimeChoice runtime;
  std::unique_ptr<StreamGenerator> generator;
  // Shared with the factory: kept across preset changes (the prompt cache survives them).
  std::shared_ptr<TextEncoder> text;
  std::shared_ptr<PromptCache> prompts;
  // Decodes on its own CUDA stream: block k's frames can be taken while block k+1 generates.
  // (Re)starts reset it, dropping queued blocks: take them first. Null without a live decoder.
  std::unique_ptr<AsyncDecoder> decoder;
  std::unique_ptr<RegionProfiler> profiler;
  // The style-LoRA faders the generator runs (Performance sets them); a preset change hands them
  // to the new generator before its stream resumes.
  std::vector<ActiveStyleLora> loras;
  // The bakes merged into this session's DiT, in order (SessionFactory::bake_style_loras): a
  // preset change that rebuilds the DiT in another dtype merges them again.
  std::vector<std::vector<ActiveStyleLora>> baked;
  at::Device device = at::kCPU;
  int height = 0, width = 0;

  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Embeddings of the mix (from the prompt cache), blended on the device.
  at::Tensor embed(const PromptMix& mix) const;
};

// What a bake did: matrices changed, device time (synchronised before and after).
struct BakeResult {
  int64_t matrices = 0;
  double ms = 0;
};

// What a preset change kept and what it rebuilt.
struct PresetChange {
  bool dit_rebuilt = false;        // another dtype: rebuilt from the resident host weights
  bool generator_rebuilt = false;  // a new generator (window, sink, block, KV storage, precision)
  bool decoder_changed = false;    // TAEHV <-> Wan VAE
  bool stream_continued = false;   // a running video went on from its frame
  // ... with its KV and text caches kept (same weights, precision and cache geometry), no
  // re-cache; otherwise the new generator re-caches the window as a prompt switch does.
  bool caches_kept = false;
  bool text_encoder_moved = false;  // text_encoder_device changed: umT5 converted in place
};

class SessionFactory {
 public:
  explicit SessionFactory(ModelSpec model, SessionOverrides overrides = {});
  ~SessionFactory();
  SessionFactory(const SessionFactory&) = delete;
  SessionFactory& operator=(const SessionFactory&) = delete;

  const ModelSpec& model() const { return model_; }
  const SessionOverrides& overrides() const { return overrides_; }
  at::Device device() const { return device_; }

  // A session of the preset at height x width (0 x 0: the preset's, 64x64 for the tiny model).
  // Weights are read once per factory and kept resident (host copies), so later sessions and
  // preset changes read no file.
  std::unique_ptr<Session> open(const Preset& preset, int height = 0, int width = 0);

  // Moves the session to `preset` in place, keeping its size: the text encoder and prompt cache
  // always; the DiT's device weights unless its dtype changes (then rebuilt from the resident
  // host weights; FP8 linears are quantised on the device from the 16-bit ones); the live decoder
  // and its temporal state unless the decoder kind changes. A started generator's stream continues
  // from its frame: with the same weights, precision and cache geometry it keeps its caches
  // (StreamGenerator::continue_with), otherwise a new generator re-caches the window (as a prompt
  // switch does). Nothing differs: nothing happens.
  PresetChange change_preset(Session& session, const Preset& preset);

  // The preset change of a session whose stream runs elsewhere, on the ranks of a RankedSession
  // (they run shards of this factory's DiT with `running`, the options the stream has now): the
  // session's text encoder and live decoder follow `preset` as in change_preset(), and the
  // result says what the stream runs next. Error for a session with baked LoRAs.
  struct StreamPreset {
    GeneratorOptions options;                   // the stream's options under the preset
    std::shared_ptr<const CausalWanModel> dit;  // its DiT when another one; null: the same
    bool same_generator = false;                // nothing the stream runs differs
    PresetChange change;                        // what changed here (text, decoder, DiT build)
  };
  StreamPreset change_preset_beside(Session& session, const Preset& preset,
                                    const GeneratorOptions& running);

  // "Bake" (docs/performing.md): merges `loras` at their strengths into the session's DiT on
  // its device, in place (CausalWanModel::merge_style_loras). Those weights become the session's
  // own: the factory stops handing them (or models sharing them) to other sessions, and later
  // preset changes of this session keep them (another dtype: rebuilt from the host weights and
  // baked again). Another open session of this factory running the same weights would see the
  // bake too (front ends run one session per factory). The caller drops the baked faders to 0.
  BakeResult bake_style_loras(Session& session, const std::vector<ActiveStyleLora>& loras);

  // The live decoder the preset asks for: with `decoder: wan` the Wan VAE (Wan2.1_VAE.pth or
  // .safetensors) when the model has it, else (with a warning) TAEHV. Weights stay resident.
  std::unique_ptr<StreamingDecoder> live_decoder(const Preset& preset);

  // The Wan VAE for a quality export (a whole-session re-decode) on `device` (default: the
  // factory's): float32 on the CPU, bf16 on a GPU. The tiny model's is a random tiny VAE (seed 0).
  // Its weights stay resident like the live decoders'. IoError naming the folder when it has no
  // Wan2.1_VAE.pth.
  std::unique_ptr<WanVaeDecoder> export_decoder(std::optional<at::Device> device = {});

  // VACE: whether sessions' DiTs carry VACE blocks (known once a session is open), and a line
  // saying what was loaded or why VACE is off.
  bool vace_available() const;
  const std::string& vace_status() const;
  // An encoder for a session's VACE input, on the factory's device (the Wan VAE's encoder; the
  // tiny model's is a random tiny VAE, seed 0). IoError naming the folder without a Wan VAE.
  // `kind` taehv: over TAEHV's encoder (taew2_1 in the folder; a random one for the random
  // models), built once and shared; IoError naming the folder without it.
  std::unique_ptr<VaceContextEncoder> vace_encoder(InputEncoderKind kind = InputEncoderKind::wan);
  // The conditioning mode's black inactive blocks, recorded by the first VACE input and taken by
  // the later ones (one per factory: its encoders share weights, device and dtype).
  std::shared_ptr<BlackInactiveLatents> black_inactive_latents();
  // The Wan VAE encoder alone (video-to-video input), same weights and rules as vace_encoder().
  std::unique_ptr<WanVaeEncoder> video_encoder();
  // TAEHV's encoder (a preset's input_encoder: taehv): taew2_1 in the folder (a random one for
  // the random models), built once on the factory's device (fp16 on a GPU) and shared.
  // IoError naming the folder without it.
  std::shared_ptr<const TaehvEncoder> taehv_encoder();
  // A video-to-video input over the encoder `kind` names (video_encoder() or taehv_encoder()).
  std::unique_ptr<VideoToVideo> video_to_video(InputEncoderKind kind, double strength,
                                               std::shared_ptr<VaceFrameSource> source,
                                               std::shared_ptr<EncodeWorker> worker = nullptr);

  // Weight materialisations so far (files read, or random weights built): a preset change that
  // keeps everything adds none.
  struct Stats {
    int64_t weight_loads = 0;
    int64_t dit_builds = 0;  // DiT models built on the device
    int64_t text_moves = 0;  // umT5 moved to another device by a preset change (no file read)
  };
  Stats stats() const { return stats_; }

 private:
  struct Resident;
  GeneratorOptions generator_options(const Preset& preset, const RuntimeChoice& runtime, int height,
                                     int width) const;
  std::shared_ptr<const CausalWanModel> dit_for(const GeneratorOptions& options);
  // The DiT for a preset change of `session` (its own baked weights when it has bakes).
  std::shared_ptr<const CausalWanModel> dit_for(const Session& session,
                                                const GeneratorOptions& options);
  // A new DiT from the resident host weights, not cached.
  std::shared_ptr<const CausalWanModel> build_dit(const GeneratorOptions& options);
  void keep_recent(std::shared_ptr<const CausalWanModel> model);
  std::unique_ptr<StreamingDecoder> decoder_for(const RuntimeChoice& runtime);
  DecoderKind live_decoder_kind(DecoderKind asked);  // what `asked` really runs here
  const WeightStore* wan_vae_weights();              // null when the model has none
  // An input's Wan VAE encoder (vace_encoder, video_encoder); `what` names the input in errors.
  WanVaeEncoder shared_encoder(const char* what);
  void ensure_text(const RuntimeChoice& runtime);
  TextEncoderOptions text_placement(const RuntimeChoice& runtime) const;
  void place_text(const RuntimeChoice& runtime);  // moves a resident umT5 where runtime wants it
  void follow_runtime(Session& session, const Preset& preset, const RuntimeChoice& runtime,
                      PresetChange& change);
  void load_vace();
  const WeightStore& encoder_weights(const char* what);
  std::shared_ptr<const CausalWanModel> attach_vace(std::shared_ptr<const CausalWanModel> model);
  // umT5 weights and tokenizer from the explicit files or the folder; ConfigError when absent.
  std::pair<std::filesystem::path, std::filesystem::path> text_encoder_files() const;
  RuntimeChoice runtime_for(const Preset& preset) const;

  ModelSpec model_;
  SessionOverrides overrides_;
  at::Device device_;
  std::unique_ptr<Resident> resident_;
  Stats stats_;
};

}  // namespace longlive
