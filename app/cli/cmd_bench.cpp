// longlive bench : DiT block latency (steady and prompt-switch blocks), FPS and memory.
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "bench_input_latency.h"
#include "bench_switch_latency.h"
#include "command.h"
#include "longlive/async_decoder.h"
#include "longlive/capabilities.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/kernel_profiler.h"
#include "longlive/log.h"
#include "longlive/preset.h"
#include "longlive/profiler.h"
#include "longlive/ranked_session.h"
#include "longlive/session.h"
#include "longlive/style_lora.h"
#include "longlive/taehv.h"
#include "longlive/text_encoder.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"
#include "rank_args.h"
#include "summary.h"

namespace longlive::cli {
namespace {

struct BenchArgs {
  std::string preset = "balanced";
  std::string presets_dir = default_presets_dir();
  std::string random = "full";
  std::string device = "auto";
  std::string json;
  int height = 0;
  int width = 0;
  int blocks = 20;
  int warmup = 3;
  int switch_every = 0;
  std::string decoder = "none";
  bool text_encoder = false;
  std::string attention = "auto";
  std::string fused = "preset";
  std::string cuda_graphs = "preset";
  std::string fp8_attention = "preset";
  int profile_blocks = 3;
  bool kernels = false;
  int kernel_blocks = 5;
  int drift_blocks = 0;
  std::string cudnn_search = "default";
  std::string decoder_layout = "best";
  bool decoder_only = false;
  std::string decoder_fused_conv = "on";
  int force_sm = 0;
  std::string drift_vs;
  int style_loras = 0;  // random style LoRAs on every block linear, at strength 1 (side path)
  int style_lora_rank = 32;
  bool vace = false;  // also time the same preset with random full-size VACE blocks
  double vace_scale = 1.0;
  int vace_drift_blocks = 6;         // blocks compared for hint reuse's drift (0: not measured)
  bool vace_encoder = true;          // also time the VACE encoder and the live encoder + DiT blocks
  std::string input_encoder_kind;    // --input-encoder: overrides the preset's input_encoder
  int vace_input_latency = 0;        // picks of a synthetic camera on the studio's Engine (0: none)
  int switch_latency = 0;            // prompt switches on the studio's Engine (0: none)
  double vace_camera_fps = 0;        // that camera filming at this rate (0: its frames at once)
  bool vace_pick_at_random = false;  // each pick at a random moment of a block
  bool vace_input_as_file = false;   // that camera passes for a file (its encoder passes)
  RankArgs ranks;                    // --gpus: one stream on several ranks
};

// `count` random style LoRAs of `rank` on every block linear of `config` (alpha = rank), and the
// host time of baking them at strength 1 into bf16 weights of the same shapes (the merge a
// "bake" costs instead of the side path).
struct RandomStyleLoras {
  std::vector<ActiveStyleLora> faders;
  double bake_ms = 0;
};
RandomStyleLoras random_style_loras(const WanConfig& config, int count, int rank) {
  RandomStyleLoras out;
  if (count <= 0) return out;
  auto gen = at::detail::createCPUGenerator(23);
  WeightStore base;  // only the adapted weights: baking touches nothing else
  for (int l = 0; l < count; ++l) {
    WeightStore file;
    for (int64_t b = 0; b < config.num_layers; ++b) {
      for (const char* m :
           {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q",
            "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"}) {
        const std::string module = fmt::format("blocks.{}.{}", b, m);
        const bool ffn0 = std::string(m) == "ffn.0", ffn2 = std::string(m) == "ffn.2";
        const int64_t in = ffn2 ? config.ffn_dim : config.dim;
        const int64_t out_dim = ffn0 ? config.ffn_dim : config.dim;
        file.add(module + ".lora_A.weight", at::randn({rank, in}, gen) / std::sqrt(in));
        file.add(module + ".lora_B.weight", at::randn({out_dim, rank}, gen) * 0.01);
        if (l == 0) base.add(module + ".weight", at::randn({out_dim, in}, gen).to(at::kBFloat16));
      }
    }
    out.faders.push_back(
        {std::make_shared<StyleLora>(map_style_lora(file, config, fmt::format("random{}", l))),
         1.0});
  }
  const auto start = std::chrono::steady_clock::now();
  const WeightStore baked = bake_style_loras(base, out.faders);
  out.bake_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// Timings of `repeat` calls after `warmup` untimed ones.
template <typename F>
Summary time_calls(at::Device device, int warmup, int repeat, F&& call) {
  GpuTimer timer(device);
  std::vector<double> ms;
  for (int i = 0; i < warmup + repeat; ++i) {
    synchronize(device);
    timer.start();
    call();
    const double t = timer.stop_ms();
    if (i >= warmup) ms.push_back(t);
  }
  return summarize(ms);
}

// bench --vace: the same preset with VACE (random VACE blocks on the same DiT, a synthetic
// control context per block), with full hints and with vace_hint_reuse, plus the VACE encoder.
struct VaceBench {
  int64_t blocks = 0, layers_fed = 0, channels = 0;
  bool fp8_blocks = false, graphs = false;
  Summary full, reuse, encode;
  // The encoder in the other layout on a GPU (encode is channels-last there, as the decoder).
  Summary encode_contiguous;
  // The conditioning mode once the inactive stream reached its fixed point (its encode reused),
  // and after how many blocks (-1: not within the probes).
  Summary encode_fixed_point;
  int64_t blocks_to_fixed_point = -1;
  // The same block (both streams, 12 frames after the first block's 9) through TAEHV's encoder
  // (input_encoder: taehv), random weights: all at once (a file's) and a group of 4 per pass (a
  // camera's).
  Summary encode_taehv, encode_taehv_groups;
  // Live conditioning (VaceConditioner, conditioning mode): encoder + DiT per block, the control
  // frames encoded in place on the generator's stream and a block ahead beside the DiT.
  Summary live_in_place, live_ahead;
  GeneratorStats full_stats;
  // With --kernels: one full-VACE block's kernels and one hint-reuse block's (graph replays),
  // and one block's encode (both streams), where the encoder is timed.
  KernelTable full_kernels, reuse_kernels, encode_kernels;
  double reuse_drift = -1;  // relative L2 of reuse's latents against full VACE's
  int drift_blocks = 0;
};

VaceBench bench_vace(const BenchArgs& a, const StreamGenerator& base, const at::Tensor& embeds,
                     int height, int width, at::Device device) {
  VaceBench out;
  const GeneratorOptions& o = base.options();
  const int64_t channels = 96;  // Wan2.1-VACE: 16 + 16 latent channels + 64 mask channels
  const WeightStore weights = make_random_vace_weights(o.model, channels, 7);
  // Synthetic control contexts (what VaceContextEncoder returns for a block of frames): a few
  // different ones, cycled, so each block conditions on a new context as a live input does.
  auto gen = at::detail::createCPUGenerator(13);
  std::vector<at::Tensor> contexts;
  for (int i = 0; i < 4; ++i)
    contexts.push_back(
        at::randn({channels, o.frames_per_block, o.latent_height, o.latent_width}, gen).to(device));
  auto make = [&](bool reuse) {
    GeneratorOptions vo = o;
    vo.vace_hint_reuse = reuse;
    return base.with_vace(weights, vo);
  };
  // Steady blocks: more warm-up than the plain run, since memory_pool does not capture VACE
  // steps at start(): each ring phase's VACE graphs are captured on their second sight.
  const int warmup = std::max(a.warmup, 10);
  auto time_blocks = [&](StreamGenerator& g) {
    g.start(embeds, 1);
    GpuTimer timer(device);
    std::vector<double> ms;
    for (int i = 0; i < warmup + a.blocks; ++i) {
      g.set_vace(VaceInput{contexts[static_cast<size_t>(i) % contexts.size()], a.vace_scale});
      synchronize(device);
      timer.start();
      g.next_block();
      const double t = timer.stop_ms();
      if (i >= warmup) ms.push_back(t);
    }
    return summarize(ms);
  };
  // The kernels of one more steady block (the context after the timed ones), when asked.
  auto sample_kernels = [&](StreamGenerator& g) {
    KernelTable table;
    if (!a.kernels) return table;
    if (!device.is_cuda()) {
      table.unavailable = "the bench runs on the CPU";
      return table;
    }
    g.set_vace(VaceInput{contexts[static_cast<size_t>(warmup + a.blocks) % contexts.size()],
                         a.vace_scale});
    synchronize(device);
    KernelProfiler profiler;
    if (profiler.start()) {
      g.next_block();
      profiler.stop();
      synchronize(device);
    }
    return profiler.collect();  // says why not when it did not start
  };
  {
    auto g = make(false);
    out.fp8_blocks = g->fp8_linears_active();
    out.graphs = g->cuda_graphs_active();
    out.full = time_blocks(*g);
    out.full_stats = g->stats();
    out.full_kernels = sample_kernels(*g);
  }
  {
    auto g = make(true);
    out.reuse = time_blocks(*g);
    out.reuse_kernels = sample_kernels(*g);
  }
  out.blocks = (o.model.num_layers + 1) / 2;
  out.channels = channels;
  // Hint reuse's drift: the same weights, prompt, seed and contexts with full VACE and with
  // reuse, latents of the first blocks compared.
  if (a.vace_drift_blocks > 0) {
    auto latents = [&](bool reuse) {
      auto g = make(reuse);
      g->start(embeds, 42);
      std::vector<at::Tensor> blocks;
      for (int i = 0; i < a.vace_drift_blocks; ++i) {
        g->set_vace(VaceInput{contexts[static_cast<size_t>(i) % contexts.size()], a.vace_scale});
        blocks.push_back(g->next_block().to(at::kCPU));
      }
      return at::cat(blocks, 1);
    };
    const at::Tensor full = latents(false);
    out.reuse_drift = relative_l2(latents(true), full);
    out.drift_blocks = a.vace_drift_blocks;
  }
  // The VACE encoder (Wan VAE encoder, inactive + reactive streams, mask): one block of 12
  // control frames (after the first block's 9), random full-size VAE weights.
  if (a.random == "full" && a.vace_encoder) {
    const WeightStore vae = make_random_wan_vae_weights(WanVaeConfig::wan_2_1(), 5, true);
    WanVaeEncoderOptions options;
    options.device = device;
    options.dtype = device.is_cpu() ? at::kFloat : at::kBFloat16;
    const int64_t first = 1 + 4 * (o.frames_per_block - 1), later = 4 * o.frames_per_block;
    const at::Tensor frames = (at::rand({later, 3, height, width}, gen) * 2 - 1).to(device);
    // Both streams encoded every block (the first blocks of any mode).
    auto time_full_encodes = [&](const WanVaeEncoderOptions& layout) {
      VaceContextEncoder encoder(vae, layout);
      encoder.set_reuse_fixed_inactive(false);
      encoder.encode(frames.narrow(0, 0, first), at::Tensor());
      return time_calls(device, 2, 10, [&] { encoder.encode(frames, at::Tensor()); });
    };
    out.encode = time_full_encodes(options);
    {
      const auto taehv = std::make_shared<const TaehvEncoder>(
          make_random_taehv_encoder_weights(4), device, device.is_cpu() ? at::kFloat : at::kHalf);
      auto time_taehv = [&](int64_t groups) {
        VaceContextEncoder encoder(taehv);
        encoder.set_frame_groups_per_pass(groups);
        encoder.encode(frames.narrow(0, 0, first), at::Tensor());
        return time_calls(device, 2, 10, [&] { encoder.encode(frames, at::Tensor()); });
      };
      out.encode_taehv = time_taehv(0);
      out.encode_taehv_groups = time_taehv(1);
    }
    if (a.kernels && device.is_cuda()) {
      // Where a block's encode goes: the convolutions against the rest (norms, SiLU, copies).
      VaceContextEncoder encoder(vae, options);
      encoder.set_reuse_fixed_inactive(false);
      encoder.encode(frames.narrow(0, 0, first), at::Tensor());
      encoder.encode(frames, at::Tensor());
      synchronize(device);
      KernelProfiler profiler;
      if (profiler.start()) {
        encoder.encode(frames, at::Tensor());
        synchronize(device);
        profiler.stop();
      }
      out.encode_kernels = profiler.collect();
    }
    if (device.is_cuda()) {
      WanVaeEncoderOptions contiguous = options;
      contiguous.layout = DecoderLayout::contiguous;
      out.encode_contiguous = time_full_encodes(contiguous);
    }
    // The conditioning mode's steady state: black inactive frames until their stream reaches
    // its fixed point, then only the reactive stream is encoded.
    VaceContextEncoder encoder(vae, options);
    encoder.encode(frames.narrow(0, 0, first), at::Tensor());
    int64_t blocks = 1;
    for (;
         encoder.inactive_encodes_skipped() == 0 && blocks <= VaceContextEncoder::kFixedPointProbes;
         ++blocks)
      encoder.encode(frames, at::Tensor());
    if (encoder.inactive_encodes_skipped() > 0) {
      out.blocks_to_fixed_point = blocks;
      out.encode_fixed_point =
          time_calls(device, 0, 10, [&] { encoder.encode(frames, at::Tensor()); });
    }
    // Block after block as the engine runs them (no device sync between blocks, so the encode
    // ahead overlaps the DiT): from one block's end to the next one's, encoder + DiT.
    const at::Tensor host_frames = frames.to(at::kCPU);
    struct CycledFrames : VaceFrameSource {
      at::Tensor pool;
      int64_t next = 0;
      at::Tensor next_frames(int64_t count) override {
        std::vector<at::Tensor> picked;
        for (int64_t i = 0; i < count; ++i, ++next) picked.push_back(pool[next % pool.size(0)]);
        return at::stack(picked);
      }
    };
    auto live = [&](bool ahead) {
      log::info("bench --vace: live conditioning, inputs encoded {}", ahead ? "ahead" : "in place");
      setenv("LONGLIVE_ENCODE_AHEAD", ahead ? "1" : "0", 1);
      auto g = make(false);
      auto source = std::make_shared<CycledFrames>();
      source->pool = host_frames;
      VaceSettings settings;
      settings.scale = a.vace_scale;
      VaceConditioner conditioner(std::make_unique<VaceContextEncoder>(vae, options), settings,
                                  source);
      g->start(embeds, 1);
      synchronize(device);
      std::vector<double> ms;
      auto last = std::chrono::steady_clock::now();
      for (int i = 0; i < warmup + a.blocks; ++i) {
        conditioner.before_block(*g);
        g->next_block();
        wait_for_current_stream(device);  // the generator's stream, as the engine waits
        const auto now = std::chrono::steady_clock::now();
        if (i >= warmup)
          ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
        last = now;
      }
      unsetenv("LONGLIVE_ENCODE_AHEAD");
      return summarize(ms);
    };
    out.live_in_place = live(false);
    if (device.is_cuda()) out.live_ahead = live(true);
  }
  return out;
}

nlohmann::json to_json(const KernelTable& t) {
  nlohmann::json rows = nlohmann::json::array();
  for (const KernelRow& r : t.rows)
    rows.push_back({{"name", r.name},
                    {"full_name", r.full_name},
                    {"region", r.region},
                    {"count", r.count},
                    {"graph_count", r.graph_count},
                    {"total_ms", r.total_ms},
                    {"mean_ms", r.mean_ms},
                    {"share", r.share}});
  return {{"unavailable", t.unavailable},
          {"kernels", t.kernels},
          {"graph_kernels", t.graph_kernels},
          {"kernel_ms", t.kernel_ms},
          {"window_ms", t.window_ms},
          {"incomplete", t.incomplete},
          {"dropped", t.dropped},
          {"host_ms", t.host_ms},
          {"rows", rows}};
}

// What sampling one block's kernels costs: the sampled blocks against the steady ones, plus the
// host time collect() adds after the block (the engine pays it before the next block).
struct KernelCost {
  Summary sampled;            // blocks timed with the kernel profiler on (start() to stop())
  Summary after;              // unsampled blocks after sampling (CUPTI loaded, not recording)
  Summary collect_ms;         // host time of collect()
  int64_t graph_replays = 0;  // DiT graph replays during the sampled blocks
  double cost_ms(double steady_median) const {
    return std::max(0.0, sampled.median - steady_median) + collect_ms.median;
  }
};

// Steady and switch block times of the bench's loop: `warmup` blocks, then `blocks` timed ones
// with a prompt switch every `switch_every` of them. One loop for one rank and for many.
struct BlockTimes {
  std::vector<double> steady, switch_blocks, recache;
};
// `timer` has start() and stop_ms() (the latter waits for the work); `sync` drains the devices
// before a block is timed. A switch is queued by `switch_prompt`; `apply_switch`, when given,
// runs its re-cache alone (timed apart, and within the switch block's time).
template <class Timer>
BlockTimes time_blocks(const BenchArgs& a, Timer& timer, const std::function<void()>& sync,
                       const std::function<void()>& switch_prompt,
                       const std::function<void()>& apply_switch,
                       const std::function<void()>& next_block) {
  BlockTimes t;
  for (int i = 0; i < a.warmup + a.blocks; ++i) {
    const bool do_switch =
        a.switch_every > 0 && i > a.warmup && (i - a.warmup) % a.switch_every == 0;
    if (do_switch) switch_prompt();
    sync();
    timer.start();
    double recache_ms = 0;
    if (do_switch && apply_switch) {
      apply_switch();
      recache_ms = timer.stop_ms();
      t.recache.push_back(recache_ms);
      timer.start();
    }
    next_block();
    const double ms = recache_ms + timer.stop_ms();
    if (do_switch)
      t.switch_blocks.push_back(ms);
    else if (i >= a.warmup)
      t.steady.push_back(ms);
  }
  return t;
}

// The ranked bench's clock: host time between draining every rank's device (the ranks run in
// parallel threads; no one device's events span them).
struct HostTimer {
  const RankedSession& ranks;
  std::chrono::steady_clock::time_point t0{};
  void start() {
    ranks.synchronize();
    t0 = std::chrono::steady_clock::now();
  }
  double stop_ms() {
    ranks.synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
};

// The steady, switch (and re-cache, when timed alone) and FPS lines.
void print_block_summary(const Summary& s, const Summary& sw, const Summary& recache,
                         double video_frames_per_block, double fps) {
  std::cout << fmt::format(
      "steady block   mean {:8.1f} ms  median {:8.1f}  p99 {:8.1f}  max {:8.1f}  ({} blocks)\n",
      s.mean, s.median, s.p99, s.max, s.count);
  if (sw.count)
    std::cout << fmt::format(
        "switch block   mean {:8.1f} ms  max {:8.1f}{}\n", sw.mean, sw.max,
        recache.count ? fmt::format("  (re-cache alone mean {:.1f} ms)", recache.mean) : "");
  std::cout << fmt::format("video FPS      {:.1f} ({} frames per block)\n", fps,
                           video_frames_per_block);
}

// --gpus N: the same stream on N ranks (docs/multi-gpu.md), opened as `generate --gpus` opens
// it; bytes are what rank 0 received from the others per steady block.
int run_ranks(const BenchArgs& a, const Preset& preset, const SessionOverrides& overrides,
              const ModelSpec& model, int height, int width) {
  auto ranked = RankedSession::open(model, overrides, preset, height, width, a.ranks.plan());
  ParallelStream& stream = ranked->stream();
  const GeneratorOptions& o = stream.rank(0).options();
  const bool one_device = ranked->devices().size() == 1;
  auto gen = at::detail::createCPUGenerator(7);
  auto embeds = [&] {
    return at::randn({1, o.model.text_len, o.model.text_dim}, gen, at::TensorOptions(at::kFloat)) *
           0.1;
  };
  const at::Tensor first_prompt = embeds();
  stream.each([&](StreamGenerator& g, int) { g.start(first_prompt, 1); });
  int64_t steady_bytes = 0;
  bool switching = false;
  HostTimer timer{*ranked};
  const BlockTimes t = time_blocks(
      a, timer, [] {},
      [&] {
        const at::Tensor next = embeds();
        stream.each([&](StreamGenerator& g, int) { g.switch_prompt(next); });
        switching = true;
      },
      {},
      [&] {
        const int64_t before = stream.bytes_received();
        stream.next_block();
        if (!switching) steady_bytes = stream.bytes_received() - before;
        switching = false;
      });
  const Summary s = summarize(t.steady);
  const Summary sw = summarize(t.switch_blocks);
  const double video_frames_per_block = 4.0 * o.frames_per_block;
  const double fps = s.median > 0 ? video_frames_per_block * 1000.0 / s.median : 0;
  std::cout << fmt::format("preset {} | {}x{} | {} ranks on {} | {} | {}\n", preset.name, height,
                           width, ranked->ranks(), device_name(ranked->devices()[0]),
                           one_device ? "one device" : "one device each",
                           to_string(ranked->backend()));
  print_block_summary(s, sw, Summary{}, video_frames_per_block, fps);
  std::cout << fmt::format("rank 0 received {:.1f} MB per steady block\n", steady_bytes / 1e6);
  if (!a.json.empty()) {
    const nlohmann::json j = {
        {"preset", preset.name},
        {"height", height},
        {"width", width},
        {"gpu", device_name(ranked->devices()[0])},
        {"ranks", ranked->ranks()},
        {"devices", ranked->devices().size()},
        {"rank_backend", to_string(ranked->backend())},
        {"steady_block", to_json(s)},
        {"switch_block", to_json(sw)},
        {"video_fps", fps},
        {"bytes_received_per_block_rank0", steady_bytes},
        {"commit", std::getenv("LONGLIVE_COMMIT") ? std::getenv("LONGLIVE_COMMIT") : "unknown"}};
    std::ofstream(a.json) << j.dump(2) << "\n";
  }
  return 0;
}

int run(const BenchArgs& a) {
  Preset preset = find_preset(a.presets_dir, a.preset);
  // A bench records no timeline, so the inputs' encoder may differ from the preset's file.
  if (!a.input_encoder_kind.empty())
    preset.input_encoder =
        a.input_encoder_kind == "taehv" ? InputEncoderKind::taehv : InputEncoderKind::wan;
  const at::Device device =
      a.device == "cpu"
          ? at::Device(at::kCPU)
          : (a.device == "cuda" || (a.device == "auto" && at::hasCUDA()) ? at::Device(at::kCUDA, 0)
                                                                         : at::Device(at::kCPU));
  // --decoder-only: the latents come from the tiny DiT (cheap to build), the decoder is the one
  // --random asks for; the DiT timings then say nothing.
  if (a.decoder_only && a.decoder == "none")
    throw ConfigError("--decoder-only needs --decoder taehv or wan");
  if (a.vace_input_latency > 0 && !a.vace) throw ConfigError("--vace-input-latency needs --vace");
  if (a.vace_camera_fps > 0 && a.vace_input_latency <= 0)
    throw ConfigError("--vace-camera-fps needs --vace-input-latency");
  if (a.vace_pick_at_random && a.vace_input_latency <= 0)
    throw ConfigError("--vace-pick-at-random-moments needs --vace-input-latency");
  if (a.vace_input_as_file && a.vace_input_latency <= 0)
    throw ConfigError("--vace-input-as-file needs --vace-input-latency");
  if (a.vace_input_as_file && a.vace_camera_fps > 0)
    throw ConfigError("--vace-input-as-file: a file is not filmed at a rate (--vace-camera-fps)");
  // cuDNN's algorithm search is process-wide: "default" leaves it to the decoders (the Wan VAE
  // turns it on), on/off force it for every convolution. (CLI11 checked every switch's value.)
  if (a.cudnn_search != "default") at::globalContext().setBenchmarkCuDNN(a.cudnn_search == "on");
  // The session the studio would open for this preset (same factory, same preset mapping), with
  // random weights and the bench's overrides of the fast paths.
  ModelSpec model;
  model.tiny_random = a.random == "tiny" || a.decoder_only;
  model.full_random = !model.tiny_random;
  model.device = device;
  SessionOverrides overrides;
  overrides.text_encoder = false;
  overrides.live_decoder = false;
  overrides.attention = parse_attention_backend(a.attention);
  if (a.fused != "preset") overrides.fused_kernels = a.fused == "on";
  if (a.fp8_attention != "preset") overrides.fp8_attention = a.fp8_attention == "on";
  if (a.cuda_graphs != "preset") overrides.cuda_graphs = a.cuda_graphs == "on";
  overrides.force_sm = a.force_sm;
  SessionFactory factory(model, overrides);
  const int height = a.height ? a.height : (model.tiny_random ? 64 : preset.height);
  const int width = a.width ? a.width : (model.tiny_random ? 64 : preset.width);
  // Kernel sampling is prepared before the session opens, as the studio does: CUPTI sees the CUDA
  // graphs being captured, and the steady blocks run with it loaded (compare a run without
  // --kernels for what that costs).
  if (a.kernels && device.is_cuda()) KernelProfiler::prepare();
  if (a.ranks.gpus > 1) return run_ranks(a, preset, overrides, model, height, width);
  auto session = factory.open(preset, height, width);
  StreamGenerator& generator = *session->generator;
  const GeneratorOptions& o = generator.options();
  const RandomStyleLoras style = random_style_loras(o.model, a.style_loras, a.style_lora_rank);
  if (!style.faders.empty()) {
    generator.set_style_loras(style.faders);
    log::info(
        "bench: {} random style LoRAs of rank {} on every block linear (side path); baking "
        "them on the host takes {:.0f} ms",
        a.style_loras, a.style_lora_rank, style.bake_ms);
  }

  log::info("bench: preset {}, {}x{}, {} weights, device {}, dtype {}", preset.name, height, width,
            a.random, device.str(), c10::toString(o.dtype));
  const RuntimeChoice& runtime = session->runtime;
  std::cout << fmt::format("capability     {}\n", runtime.capabilities.describe());
  for (const auto& line : runtime.fallbacks) std::cout << fmt::format("fallback       {}\n", line);
  auto gen = at::detail::createCPUGenerator(7);
  auto embeds = [&] {
    return at::randn({1, o.model.text_len, o.model.text_dim}, gen, at::TensorOptions(at::kFloat)) *
           0.1;
  };
  generator.start(embeds(), 1);
  const double reserve_ms = generator.stats().reserve_ms;
  GpuTimer timer(device);
  reset_peak_memory(device);
  const BlockTimes times = time_blocks(
      a, timer, [&] { synchronize(device); }, [&] { generator.switch_prompt(embeds()); },
      [&] { generator.apply_pending_switch(); }, [&] { generator.next_block(); });
  std::optional<VaceBench> vace;
  if (a.vace) {
    auto text_gen = at::detail::createCPUGenerator(7);
    const at::Tensor prompt = at::randn({1, o.model.text_len, o.model.text_dim}, text_gen,
                                        at::TensorOptions(at::kFloat)) *
                              0.1;
    vace = bench_vace(a, generator, prompt, height, width, device);
  }
  // Per-region device time over a few more blocks (events only while profiling).
  RegionTimes regions;
  if (a.profile_blocks > 0) {
    RegionProfiler profiler(device);
    profiler.activate();
    for (int i = 0; i < a.profile_blocks; ++i) generator.next_block();
    regions = profiler.collect();
  }
  // The kernels of one block (CUPTI), sampled as the studio samples them, and the cost of it.
  KernelTable kernel_table;
  KernelCost kernel_cost;
  if (a.kernels && !device.is_cuda()) {
    kernel_table.unavailable = "the bench runs on the CPU";
  } else if (a.kernels) {
    KernelProfiler profiler;
    std::vector<double> sampled, after, collect_ms;
    const int64_t replays_before = generator.stats().graph_replays;
    for (int i = 0; i < a.kernel_blocks; ++i) {
      synchronize(device);
      timer.start();
      if (!profiler.start()) break;
      generator.next_block();
      profiler.stop();
      sampled.push_back(timer.stop_ms());  // waits for the block: its kernels are done
      const auto t0 = std::chrono::steady_clock::now();
      kernel_table = profiler.collect();
      collect_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (sampled.empty()) kernel_table = profiler.collect();  // says why not
    kernel_cost.graph_replays = generator.stats().graph_replays - replays_before;
    for (int i = 0; !sampled.empty() && i < a.kernel_blocks; ++i) {
      synchronize(device);
      timer.start();
      generator.next_block();
      after.push_back(timer.stop_ms());
    }
    kernel_cost.sampled = summarize(sampled);
    kernel_cost.after = summarize(after);
    kernel_cost.collect_ms = summarize(collect_ms);
  }
  // Drift: relative L2 between this configuration's latents and the plain-ATen path of the
  // same preset (fused kernels and FP8 off, ATen's attention choice), same weights and seed.
  // The latents of `blocks` blocks from a fixed prompt embedding and seed (restarts `g`): what
  // both drift measurements compare.
  auto drift_latents = [&](StreamGenerator& g, int blocks) {
    auto text_gen = at::detail::createCPUGenerator(11);
    const auto& m = g.options().model;
    g.start(at::randn({1, m.text_len, m.text_dim}, text_gen, at::TensorOptions(at::kFloat)) * 0.1,
            42);
    std::vector<at::Tensor> out;
    for (int i = 0; i < blocks; ++i) out.push_back(g.next_block().to(at::kCPU));
    return at::cat(out, 1);
  };
  double drift = -1;
  if (a.drift_blocks > 0) {
    const at::Tensor fast = drift_latents(generator, a.drift_blocks);
    // The plain path of the same preset and the same random weights (fixed seed): fused kernels,
    // FP8 and graphs off, flash attention.
    SessionFactory plain_factory(model, {.attention = AttentionBackend::flash,
                                         .fused_kernels = false,
                                         .cuda_graphs = false,
                                         .fp8_attention = false,
                                         .fp8_linears = false,
                                         .text_encoder = false,
                                         .live_decoder = false});
    auto plain = plain_factory.open(preset, height, width);
    drift = relative_l2(fast, drift_latents(*plain->generator, a.drift_blocks));
  }
  // Drift against another preset (balanced, say): the same random weights, prompt and seed
  // through both presets as each runs by default; latents compared frame for frame, and the
  // frames of a float32 TAEHV (random weights) decode of each by PSNR / SSIM.
  nlohmann::json drift_vs = nullptr;
  if (!a.drift_vs.empty()) {
    const Preset reference_preset = find_preset(a.presets_dir, a.drift_vs);
    const int blocks = a.drift_blocks > 0 ? a.drift_blocks : 6;
    SessionOverrides reference_overrides;
    reference_overrides.text_encoder = false;
    reference_overrides.live_decoder = false;
    reference_overrides.force_sm = a.force_sm;
    SessionFactory reference_factory(model, reference_overrides);
    auto reference = reference_factory.open(reference_preset, height, width);
    at::Tensor ours = drift_latents(generator, blocks).to(at::kFloat);
    at::Tensor theirs = drift_latents(*reference->generator, blocks).to(at::kFloat);
    const int64_t frames = std::min(ours.size(1), theirs.size(1));
    ours = ours.narrow(1, 0, frames);
    theirs = theirs.narrow(1, 0, frames);
    auto decoded = [&](const at::Tensor& latents) {
      auto decoder = make_taehv_decoder(make_random_taehv_weights(5), {device, at::kFloat});
      return decoder->decode(latents.to(device)).to(at::kCPU);
    };
    const at::Tensor ours_frames = decoded(ours), theirs_frames = decoded(theirs);
    const double l2 = relative_l2(ours, theirs);
    const double db = psnr(ours_frames, theirs_frames);
    const double structural = ssim(ours_frames, theirs_frames);
    std::cout << fmt::format(
        "drift vs {:<8} latents relative L2 {:.3e} over {} latent frames; frames PSNR {:.2f} dB, "
        "SSIM {:.4f} (random TAEHV)\n",
        reference_preset.name, l2, frames, db, structural);
    drift_vs = {{"preset", reference_preset.name},
                {"latent_frames", frames},
                {"latents_relative_l2", l2},
                {"psnr_db", std::isinf(db) ? nlohmann::json("inf") : nlohmann::json(db)},
                {"ssim", structural},
                {"note", "random weights: not the trained model's drift"}};
  }
  // Decoder: one block of latents -> 12 frames (steady state, after the first block).
  Summary decode, pipeline;
  const std::map<std::string, DecoderLayout> layouts = {
      {"best", DecoderLayout::best},
      {"contiguous", DecoderLayout::contiguous},
      {"channels_last", DecoderLayout::channels_last}};
  const DecoderLayout layout = layouts.at(a.decoder_layout);
  // Random decoder weights: TAEHV has one size; the Wan VAE follows --random (full = the
  // released 2.1 VAE, decoder only). Both run in half precision on the GPU.
  auto make_decoder = [&]() -> std::unique_ptr<StreamingDecoder> {
    if (a.decoder == "taehv")
      return make_taehv_decoder(
          make_random_taehv_weights(5),
          {device, device.is_cpu() ? at::kFloat : at::kHalf, layout, a.decoder_fused_conv == "on"});
    const WanVaeConfig c = a.random == "tiny" ? WanVaeConfig::tiny() : WanVaeConfig::wan_2_1();
    WanVaeDecoderOptions wo;
    wo.device = device;
    wo.dtype = device.is_cpu() ? at::kFloat : at::kBFloat16;
    wo.layout = layout;
    if (a.cudnn_search != "default") wo.cudnn_search = a.cudnn_search == "on";
    return std::make_unique<WanVaeDecoder>(make_random_wan_vae_weights(c, 5, false), wo);
  };
  if (a.decoder != "none") {
    auto decoder = make_decoder();
    const at::Tensor block = generator.next_block();
    decoder->decode(block);  // first block of a video: 9 frames; the timed ones yield 12
    decode = time_calls(device, 2, 10, [&] { decoder->decode(block); });
    // The live pipeline: block k decodes on its own stream while block k+1 generates; frames
    // reach pinned host memory. Per-block wall time of the whole loop.
    AsyncDecoder async(make_decoder(), device);
    // Interval between the frame deliveries of consecutive blocks: the live frame period.
    const int pipeline_blocks = std::max(3, a.blocks / 2);
    std::vector<double> per_block;
    async.submit(generator.next_block());  // fill the pipeline
    auto last = std::chrono::steady_clock::now();
    for (int i = 0; i < pipeline_blocks; ++i) {
      async.submit(generator.next_block());  // block i+1 queued behind block i's decode
      async.take();                          // block i's frames are on the host
      const auto now = std::chrono::steady_clock::now();
      if (i > 0) per_block.push_back(std::chrono::duration<double, std::milli>(now - last).count());
      last = now;
    }
    async.reset();
    pipeline = summarize(per_block);
  }
  // umT5-XXL forward over 512 tokens with random bf16 weights.
  Summary text;
  if (a.text_encoder) {
    const UMT5Config c = a.random == "tiny" ? UMT5Config::tiny() : UMT5Config::umt5_xxl();
    const at::ScalarType dt = device.is_cpu() ? at::kFloat : at::kBFloat16;
    UMT5Encoder encoder(make_random_umt5_weights(c, 9, dt, device), c, device, dt);
    const at::Tensor ids = at::randint(2, c.vocab, {1, 512}, at::kLong);
    at::Tensor mask = at::zeros({1, 512}, at::kLong);
    mask.narrow(1, 0, 120).fill_(1);
    text = time_calls(device, 2, 10, [&] { encoder.forward(ids, mask); });
  }
  const Summary s = summarize(times.steady);
  const Summary sw = summarize(times.switch_blocks);
  const Summary rc = summarize(times.recache);
  const DeviceMemory mem = device_memory(device);
  const GeneratorStats gstats = generator.stats();
  // With style LoRAs: the device bake of the same faders (what the studio's Bake costs,
  // SessionFactory::bake_style_loras), then steady blocks on the baked weights, side path off.
  double bake_device_ms = 0;
  Summary after_bake;
  // Whether the blocks on the baked weights replay graphs (captured again without the side path).
  int64_t replays_after_bake = 0, eager_after_bake = 0;
  if (!style.faders.empty()) {
    bake_device_ms = factory.bake_style_loras(*session, style.faders).ms;
    std::vector<ActiveStyleLora> off = style.faders;
    for (auto& f : off) f.strength = 0;
    generator.set_style_loras(off);
    std::vector<double> times;
    for (int i = 0; i < a.warmup + std::min(a.blocks, 8); ++i) {
      synchronize(device);
      timer.start();
      generator.next_block();
      const double ms = timer.stop_ms();
      if (i >= a.warmup) times.push_back(ms);
    }
    after_bake = summarize(times);
    replays_after_bake = generator.stats().graph_replays - gstats.graph_replays;
    eager_after_bake = generator.stats().graph_eager_forwards - gstats.graph_eager_forwards;
  }
  const double video_frames_per_block = 4.0 * o.frames_per_block;
  const double fps = s.median > 0 ? video_frames_per_block * 1000.0 / s.median : 0;

  std::cout << fmt::format("preset {} | {}x{} | {} ({}) | {} | blocks {} (+{} warm-up){}{}\n",
                           preset.name, height, width, device_name(device), device.str(),
                           c10::toString(o.dtype), a.blocks, a.warmup,
                           generator.fp8_linears_active() ? " | fp8 linears" : "",
                           generator.fp8_attention_active() ? " | fp8 attention" : "");
  if (a.decoder_only)
    std::cout << "decoder only   (the DiT figures below are of a tiny random model)\n";
  print_block_summary(s, sw, rc, video_frames_per_block, fps);
  if (!style.faders.empty())
    std::cout << fmt::format(
        "style LoRAs    {} x rank {}: bake on the device {:.1f} ms (host {:.0f} ms); after it "
        "median {:.1f} ms per block ({} graph replays, {} eager forwards)\n",
        a.style_loras, a.style_lora_rank, bake_device_ms, style.bake_ms, after_bake.median,
        replays_after_bake, eager_after_bake);
  if (decode.count)
    std::cout << fmt::format("{:<14} median {:8.1f} ms per block  p99 {:.1f}\n",
                             a.decoder == "wan" ? "Wan VAE decode" : "TAEHV decode", decode.median,
                             decode.p99);
  if (pipeline.count)
    std::cout << fmt::format(
        "pipeline       median {:8.1f} ms per block (DiT + decode on its own stream + frames on "
        "the host)\n",
        pipeline.median);
  if (text.count)
    std::cout << fmt::format("umT5 encode    median {:8.1f} ms (512 tokens)  p99 {:.1f}\n",
                             text.median, text.p99);
  std::cout << fmt::format("memory         peak allocated {:.2f} GiB, peak reserved {:.2f} GiB\n",
                           mem.peak_allocated_gib, mem.peak_reserved_gib);
  if (reserve_ms > 0)
    std::cout << fmt::format(
        "reserved       every steady KV plan warmed{} at start() in {:.0f} ms (memory_pool)\n",
        generator.cuda_graphs_active() ? " and captured" : "", reserve_ms);
  if (generator.cuda_graphs_active())
    std::cout << fmt::format(
        "cuda graphs    {} captured, {} replays, {} eager forwards (first sight of a KV plan, "
        "profiled blocks; re-caches run eagerly)\n",
        gstats.graph_captures, gstats.graph_replays, gstats.graph_eager_forwards);
  if (const GemmTuningReport gemm = gemm_tuning_report(); gemm.enabled && device.is_cuda())
    std::cout << fmt::format(
        "gemm tuning    cuBLASLt algorithms: {} shapes timed, {} read from {}, {} first seen in a "
        "capture\n",
        gemm.timed, gemm.from_file,
        gemm.choices_file.empty() ? "(no choices file)" : gemm.choices_file, gemm.in_capture);
  const double profiled = a.profile_blocks > 0 ? a.profile_blocks : 1;
  nlohmann::json region_json = nlohmann::json::object();
  if (!regions.ms.empty()) {
    std::cout << fmt::format("regions        per block over {} profiled blocks (CUDA events)\n",
                             a.profile_blocks);
    std::vector<std::pair<std::string, double>> sorted(regions.ms.begin(), regions.ms.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& x, const auto& y) { return x.second > y.second; });
    for (const auto& [name, ms] : sorted) {
      std::cout << fmt::format("  {:<16} {:8.1f} ms  {:5.1f} %\n", name, ms / profiled,
                               100.0 * ms / regions.span_ms);
      region_json[name] = ms / profiled;
    }
    std::cout << fmt::format("  {:<16} {:8.1f} ms  {:5.1f} %  (launch gaps, host waits)\n",
                             "uncovered", (regions.span_ms - regions.covered_ms) / profiled,
                             100.0 * regions.uncovered_fraction());
  }
  if (a.kernels) {
    std::cout << format_kernel_table(kernel_table);
    if (kernel_cost.sampled.count) {
      const double cost = kernel_cost.cost_ms(s.median);
      std::cout << fmt::format(
          "kernel sampling  sampled block median {:.1f} ms vs steady {:.1f} ms, collect() {:.2f} "
          "ms "
          "on the host: {:.2f} ms per sampled block = {:.2f} % of a block (target <= 2 %); "
          "unsampled blocks after sampling median {:.1f} ms ({} blocks each)\n",
          kernel_cost.sampled.median, s.median, kernel_cost.collect_ms.median, cost,
          s.median > 0 ? 100 * cost / s.median : 0.0, kernel_cost.after.median,
          kernel_cost.sampled.count);
      if (kernel_cost.graph_replays > 0 && kernel_table.graph_kernels == 0)
        std::cout << fmt::format(
            "  warning: {} CUDA graph replays in the sampled blocks, but CUPTI reported no graph "
            "kernels\n",
            kernel_cost.graph_replays);
    }
  }
  if (drift >= 0)
    std::cout << fmt::format(
        "drift          {:.3e} relative L2 vs the plain path after {} blocks\n", drift,
        a.drift_blocks);
  // Last, so its engine (a second copy of the weights, its own threads) disturbs no timing above.
  std::optional<InputLatency> input_latency;
  if (a.vace_input_latency > 0) {
    ModelSpec engine_model = model;
    engine_model.random_prompts = true;
    engine_model.random_vace = true;
    input_latency =
        measure_input_latency(engine_model, preset, height, width, a.vace_input_latency,
                              a.vace_camera_fps, a.vace_pick_at_random, a.vace_input_as_file);
    std::cout << describe(*input_latency);
  }
  std::optional<SwitchLatency> switch_latency;
  if (a.switch_latency > 0) {
    ModelSpec engine_model = model;
    engine_model.random_prompts = true;
    switch_latency = measure_switch_latency(engine_model, preset, height, width, a.switch_latency);
    std::cout << describe(*switch_latency);
  }
  nlohmann::json vace_json = nullptr;
  if (vace) {
    const VaceBench& v = *vace;
    const double full_ms = v.full.median - s.median, reuse_ms = v.reuse.median - s.median;
    const double full_pct = s.median > 0 ? 100 * full_ms / s.median : 0;
    const double reuse_pct = s.median > 0 ? 100 * reuse_ms / s.median : 0;
    std::cout << fmt::format(
        "vace           {} blocks, {} context channels{}{}: block median {:.1f} ms (p99 {:.1f}), "
        "VACE {:.1f} ms per block = {:+.1f} % of the block without VACE\n",
        v.blocks, v.channels, v.fp8_blocks ? ", FP8 VACE blocks" : "",
        v.graphs ? ", in CUDA graphs" : "", v.full.median, v.full.p99, full_ms, full_pct);
    std::cout << fmt::format(
        "vace reuse     hints of step 1 reused: block median {:.1f} ms (p99 {:.1f}), VACE {:.1f} "
        "ms "
        "= {:+.1f} %; drift vs full VACE {:.3e} relative L2 after {} blocks\n",
        v.reuse.median, v.reuse.p99, reuse_ms, reuse_pct, v.reuse_drift, v.drift_blocks);
    if (v.encode.count)
      std::cout << fmt::format(
          "vace encode    median {:.1f} ms per block of {} control frames (Wan VAE encoder, "
          "inactive + reactive) p99 {:.1f}\n",
          v.encode.median, 4 * o.frames_per_block, v.encode.p99);
    if (v.encode_taehv.count)
      std::cout << fmt::format(
          "vace encode    median {:.1f} ms per block with TAEHV's encoder (input_encoder taehv; "
          "both streams) p99 {:.1f}; a group of 4 frames per pass (a camera's) {:.1f} ms\n",
          v.encode_taehv.median, v.encode_taehv.p99, v.encode_taehv_groups.median);
    if (v.encode_contiguous.count)
      std::cout << fmt::format(
          "vace encode    median {:.1f} ms per block in the contiguous layout (the default above "
          "is channels-last) p99 {:.1f}\n",
          v.encode_contiguous.median, v.encode_contiguous.p99);
    if (v.encode_fixed_point.count)
      std::cout << fmt::format(
          "vace encode    median {:.1f} ms per block with an all-ones mask once the inactive "
          "stream is at its fixed point (after {} blocks) p99 {:.1f}\n",
          v.encode_fixed_point.median, v.blocks_to_fixed_point, v.encode_fixed_point.p99);
    else if (v.encode.count)
      std::cout << fmt::format(
          "vace encode    the inactive stream reached no fixed point within {} blocks\n",
          VaceContextEncoder::kFixedPointProbes);
    if (v.live_in_place.count)
      std::cout << fmt::format(
          "vace live      encoder + DiT per block: in place {:.1f} ms (p99 {:.1f}), encoded a "
          "block ahead {:.1f} ms (p99 {:.1f})\n",
          v.live_in_place.median, v.live_in_place.p99, v.live_ahead.median, v.live_ahead.p99);
    if (a.kernels) {
      std::cout << "vace kernels   one full-VACE block:\n" << format_kernel_table(v.full_kernels);
      std::cout << "vace kernels   one hint-reuse block:\n" << format_kernel_table(v.reuse_kernels);
      // What VACE adds, kernel by kernel, against the plain block (its table above).
      std::cout << "vace kernels   the full-VACE block minus the plain block:\n"
                << format_kernel_difference(v.full_kernels, kernel_table, 24);
      std::cout << "vace kernels   the hint-reuse block minus the plain block:\n"
                << format_kernel_difference(v.reuse_kernels, kernel_table, 24);
      if (v.encode.count)
        std::cout << "vace kernels   one block's encode (both streams):\n"
                  << format_kernel_table(v.encode_kernels);
    }
    vace_json = {{"blocks", v.blocks},
                 {"context_channels", v.channels},
                 {"scale", a.vace_scale},
                 {"fp8_vace_blocks", v.fp8_blocks},
                 {"cuda_graphs", v.graphs},
                 {"steady_block", to_json(v.full)},
                 {"vace_ms_per_block", full_ms},
                 {"vace_overhead_pct", full_pct},
                 {"graph_captures", v.full_stats.graph_captures},
                 {"graph_replays", v.full_stats.graph_replays},
                 {"graph_eager_forwards", v.full_stats.graph_eager_forwards},
                 {"hint_reuse",
                  {{"steady_block", to_json(v.reuse)},
                   {"vace_ms_per_block", reuse_ms},
                   {"vace_overhead_pct", reuse_pct},
                   {"drift_relative_l2", v.reuse_drift},
                   {"drift_blocks", v.drift_blocks},
                   {"note", "random weights: not the trained model's drift"}}},
                 {"encode_ms_per_block", to_json(v.encode)},
                 {"encode_ms_per_block_contiguous", to_json(v.encode_contiguous)},
                 {"encode_ms_per_block_taehv", to_json(v.encode_taehv)},
                 {"encode_ms_per_block_taehv_groups", to_json(v.encode_taehv_groups)},
                 {"encode_ms_per_block_fixed_point", to_json(v.encode_fixed_point)},
                 {"encode_blocks_to_fixed_point", v.blocks_to_fixed_point},
                 {"live_block_in_place", to_json(v.live_in_place)},
                 {"live_block_encoded_ahead", to_json(v.live_ahead)},
                 {"baseline_steady_block_median_ms", s.median}};
    if (a.kernels) {
      vace_json["kernels"] = to_json(v.full_kernels);
      vace_json["hint_reuse"]["kernels"] = to_json(v.reuse_kernels);
      if (v.encode.count) vace_json["encode_kernels"] = to_json(v.encode_kernels);
    }
  }
  if (!a.json.empty()) {
    const char* commit = std::getenv("LONGLIVE_COMMIT");
    // FlashAttention-3's schedule override (runtime/fa3_attention.h), if any.
    const char* fa3_schedule = std::getenv("LONGLIVE_FA3_SCHEDULE");
    nlohmann::json j = {{"preset", preset.name},
                        {"height", height},
                        {"width", width},
                        {"device", device.str()},
                        {"dtype", c10::toString(o.dtype)},
                        {"weights", a.random},
                        {"commit", commit ? commit : "unknown"},
                        {"steady_block", to_json(s)},
                        {"switch_block", to_json(sw)},
                        {"recache", to_json(rc)},
                        {"video_fps", fps},
                        {"decoder", a.decoder},
                        {"decoder_layout", a.decoder_layout},
                        {"decoder_only", a.decoder_only},
                        {"decoder_fused_conv", a.decoder_fused_conv == "on"},
                        {"cudnn_search", a.cudnn_search},
                        {"gpu", device_name(device)},
                        {"capability", runtime.capabilities.describe()},
                        {"fallbacks", runtime.fallbacks},
                        {a.decoder == "wan" ? "wan_vae_decode" : "taehv_decode", to_json(decode)},
                        {"pipeline_block", to_json(pipeline)},
                        {"text_encode", to_json(text)},
                        {"peak_allocated_gib", mem.peak_allocated_gib},
                        {"peak_reserved_gib", mem.peak_reserved_gib},
                        {"attention", a.attention},
                        {"fa3_schedule", fa3_schedule ? fa3_schedule : "default"},
                        {"fused_kernels", o.runtime.fused_kernels},
                        {"fp8_linears", o.runtime.fp8_linears},
                        {"fp8_attention", generator.fp8_attention_active()},
                        {"cuda_graphs", generator.cuda_graphs_active()},
                        {"graph_captures", gstats.graph_captures},
                        {"graph_replays", gstats.graph_replays},
                        {"graph_eager_forwards", gstats.graph_eager_forwards},
                        {"reserve_up_front", o.reserve_up_front},
                        {"reserve_ms", reserve_ms},
                        {"regions_ms_per_block", region_json},
                        {"uncovered_fraction", regions.uncovered_fraction()},
                        {"drift_relative_l2", drift},
                        {"drift_blocks", a.drift_blocks},
                        {"drift_vs", drift_vs},
                        {"style_loras", a.style_loras},
                        {"style_lora_rank", a.style_lora_rank},
                        {"style_lora_bake_host_ms", style.bake_ms},
                        {"style_lora_bake_device_ms", bake_device_ms},
                        {"steady_block_after_bake", to_json(after_bake)},
                        {"graph_replays_after_bake", replays_after_bake},
                        {"graph_eager_forwards_after_bake", eager_after_bake}};
    const GemmTuningReport gemm = gemm_tuning_report();
    j["gemm_tuning"] = {{"enabled", gemm.enabled && device.is_cuda()},
                        {"timed", gemm.timed},
                        {"from_file", gemm.from_file},
                        {"in_capture", gemm.in_capture},
                        {"choices_file", gemm.choices_file}};
    // Every LONGLIVE_* variable set for the run: an A/B's toggles, named in its own results.
    nlohmann::json environment = nlohmann::json::object();
    for (char** e = environ; e && *e; ++e) {
      const std::string_view entry(*e);
      const size_t eq = entry.find('=');
      if (entry.rfind("LONGLIVE_", 0) == 0 && eq != std::string_view::npos)
        environment[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
    }
    j["environment"] = environment;
    if (switch_latency) j["switch_latency"] = to_json(*switch_latency);
    if (vace) {
      j["vace"] = vace_json;
      if (input_latency) j["vace"]["input_latency"] = to_json(*input_latency);
      j["vace_overhead_pct"] = vace_json["vace_overhead_pct"];
      j["vace_hint_reuse_overhead_pct"] = vace_json["hint_reuse"]["vace_overhead_pct"];
    }
    if (a.kernels) {
      j["kernels"] = to_json(kernel_table);
      j["kernel_sampling"] = {
          {"blocks", kernel_cost.sampled.count},
          {"sampled_block_median_ms", kernel_cost.sampled.median},
          {"steady_block_median_ms", s.median},
          {"unsampled_after_median_ms", kernel_cost.after.median},
          {"collect_median_ms", kernel_cost.collect_ms.median},
          {"graph_replays", kernel_cost.graph_replays},
          {"cost_ms", kernel_cost.sampled.count ? kernel_cost.cost_ms(s.median) : 0.0},
          {"cost_fraction", kernel_cost.sampled.count && s.median > 0
                                ? kernel_cost.cost_ms(s.median) / s.median
                                : 0.0}};
    }
    std::ofstream(a.json) << j.dump(2) << "\n";
  }
  return 0;
}

const Registrar kBench("bench", [](CLI::App& root) {
  auto* cmd = root.add_subcommand("bench", "Benchmark the DiT block loop (CUDA-event timings)");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("--preset", a->preset, "Preset name");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--random", a->random, "Random weights: full (1.3B config) or tiny")
      ->check(CLI::IsMember({"full", "tiny"}));
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  cmd->add_option("--height", a->height, "Video height");
  cmd->add_option("--width", a->width, "Video width");
  cmd->add_option("--blocks", a->blocks, "Timed blocks")->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", a->warmup, "Untimed warm-up blocks")->check(CLI::Range(0, 1000));
  cmd->add_option("--switch-every", a->switch_every,
                  "Hard prompt switch every N blocks (0: never)");
  cmd->add_option("--json", a->json, "Write results as JSON here");
  add_rank_options(cmd, a->ranks);
  cmd->add_option("--decoder", a->decoder,
                  "Also time a decoder per block: taehv, wan or none (wan: real-size Wan VAE with "
                  "--random full)")
      ->check(CLI::IsMember({"none", "taehv", "wan"}));
  cmd->add_flag("--text-encoder", a->text_encoder, "Also time one umT5 forward over 512 tokens");
  cmd->add_option("--attention", a->attention,
                  "Attention backend: auto, cudnn, flash, efficient, math");
  cmd->add_option("--cudnn-search", a->cudnn_search,
                  "cuDNN's conv algorithm search (process-wide): default (the decoders decide, "
                  "the Wan VAE turns it on), on or off")
      ->check(CLI::IsMember({"default", "on", "off"}));
  cmd->add_option("--decoder-fused-conv", a->decoder_fused_conv,
                  "TAEHV on the GPU: conv + bias + ReLU (+ residual) as one cuDNN call: on "
                  "(default) or off")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_flag("--decoder-only", a->decoder_only,
                "Time only the decoder (latents from a tiny random DiT at the same size)");
  cmd->add_option("--decoder-layout", a->decoder_layout,
                  "Decoder activation layout on the GPU: best (measured per decoder), contiguous "
                  "or channels_last")
      ->check(CLI::IsMember({"best", "contiguous", "channels_last"}));
  cmd->add_option("--fused", a->fused, "Fused CUDA kernels: preset (as the preset says), on or off")
      ->check(CLI::IsMember({"preset", "on", "off"}));
  cmd->add_option("--fp8-attention", a->fp8_attention,
                  "cuDNN FP8 self-attention over an FP8 KV cache: preset (on for dtype fp8), on "
                  "or off")
      ->check(CLI::IsMember({"preset", "on", "off"}));
  cmd->add_option("--cuda-graphs", a->cuda_graphs,
                  "CUDA graphs per DiT forward: preset (as the preset says), on or off")
      ->check(CLI::IsMember({"preset", "on", "off"}));
  cmd->add_option("--profile-blocks", a->profile_blocks,
                  "Blocks timed per region after the timed run (0: none)")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--force-sm", a->force_sm,
                  "Run as on a GPU of this lower compute capability (e.g. 86): tests the fallbacks "
                  "a smaller card takes (also LONGLIVE_FORCE_SM)")
      ->check(CLI::Range(0, 200));
  cmd->add_option("--drift-vs", a->drift_vs,
                  "Also compare with another preset (same weights, prompt, seed): latents "
                  "relative L2 and decoded frames' PSNR / SSIM after --drift-blocks (default 6)");
  cmd->add_flag("--kernels", a->kernels,
                "Per-kernel table of one block from CUPTI (by region, CUDA graph kernels "
                "included) and what sampling it costs");
  cmd->add_option("--kernel-blocks", a->kernel_blocks,
                  "Blocks sampled for --kernels (the table is the last one's; the cost is the "
                  "median)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--style-loras", a->style_loras,
                  "Random style LoRAs on every block linear at strength 1 (the side path's cost)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--style-lora-rank", a->style_lora_rank, "Rank of those LoRAs")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--vace", a->vace,
                "Also time the preset with random full-size VACE blocks (15 for the 1.3B, 96 "
                "context channels) and a synthetic context per block: full hints and "
                "vace_hint_reuse, overhead %, reuse's drift, the VACE encoder per block");
  cmd->add_option("--vace-scale", a->vace_scale, "VACE context scale for --vace");
  cmd->add_flag("!--no-vace-encoder", a->vace_encoder,
                "With --vace: leave out the VACE encoder's timings and the live encoder + DiT "
                "blocks (the overhead runs only)");
  cmd->add_option("--input-encoder", a->input_encoder_kind,
                  "With --vace-input-latency: the inputs' encoder instead of the preset's "
                  "input_encoder (wan: the Wan VAE's, taehv: TAEHV's)")
      ->check(CLI::IsMember({"wan", "taehv"}));
  cmd->add_option("--vace-input-latency", a->vace_input_latency,
                  "With --vace: pick a synthetic camera N times on the studio's Engine (random "
                  "VACE blocks and Wan VAE encoder, the preset's live decoder) and report picked "
                  "-> first conditioned frame ready, against its block times (0: not measured)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--switch-latency", a->switch_latency,
                  "Switch the prompt N + 1 times on the studio's Engine (the preset's live "
                  "decoder), each at a random moment of a block, and report switched -> the new "
                  "prompt's first frame ready (the first switch apart; 0: not measured)")
      ->check(CLI::Range(0, 100));
  cmd->add_flag("--vace-pick-at-random-moments", a->vace_pick_at_random,
                "With --vace-input-latency: each pick at a random moment of a block (seeded), "
                "not as a block begins");
  cmd->add_flag("--vace-input-as-file", a->vace_input_as_file,
                "With --vace-input-latency: the synthetic input passes for a file (a call's "
                "frames in one encoder pass on a GPU) instead of a camera (a group of 4 frames "
                "per pass), for the A/B of the encoder's passes at a pick");
  cmd->add_option("--vace-camera-fps", a->vace_camera_fps,
                  "With --vace-input-latency: the synthetic camera films at this rate, as a live "
                  "camera (its first block takes what it has filmed, later blocks wait for "
                  "theirs), and the bench reports filmed -> on screen per block (0: every frame "
                  "there at once)")
      ->check(CLI::Range(0.0, 240.0));
  cmd->add_option("--vace-drift-blocks", a->vace_drift_blocks,
                  "Blocks compared for hint reuse's drift against full VACE (0: not measured)")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--drift-blocks", a->drift_blocks,
                  "Also report the relative L2 drift from the plain path after N blocks (0: no)")
      ->check(CLI::Range(0, 1000));
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
