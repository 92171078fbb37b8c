// longlive soak : runs the studio's engine (worker thread, command queue, prompt cache, live
// decoder, recorder) for a long time the way a performer drives it, and checks that the process
// does not grow: a prompt cut or transition every block, a preset change every 50 blocks, a
// recording started or stopped every 100 blocks, a pause/resume every 150 blocks. Every
// --report-seconds it prints one JSON line with RSS (and its anonymous and file-backed parts),
// open file descriptors, threads and files in its work folder. Exit 0 when, after the warm-up, the
// anonymous RSS stays within --max-rss-growth percent of its peak in the warm-up's second half
// (after the model's load) and fds, threads and files never exceed their warm-up peaks; 3 otherwise
// (the last line says which), 1 on an engine or recorder error. On a CUDA device the lines also
// carry the caching allocator's memory and the block times, and the GPU memory must stay within
// --max-gpu-growth percent of the warm-up's peaks.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "flat_dir.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/kernel_profiler.h"
#include "longlive/log.h"
#include "longlive/preset.h"
#include "longlive/profiler.h"
#include "longlive/session.h"
#ifdef LONGLIVE_WITH_RECORDER
#include "longlive/recorder.h"
#endif

namespace longlive::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct SoakArgs {
  double minutes = 10;
  double warmup_minutes = 1;
  double report_seconds = 60;
  double max_rss_growth = 2.0;  // percent
  std::string presets = "balanced,turbo,low_memory";
  std::string presets_dir = default_presets_dir();
  std::string device = "cpu";
  // tiny: the CPU-sized random model at 64x64. full: the 1.3B geometry with random weights at the
  // first preset's resolution (480x832 for balanced), a prompt's embeddings seeded by its text.
  std::string random = "tiny";
  double max_gpu_growth = 2.0;  // percent, CUDA allocated and reserved peaks
  std::string work_dir;  // recordings; default: a fresh folder under the temp dir, removed after
  uint64_t seed = 42;
  int64_t record_every = 100;
  int64_t preset_every = 50;
  int64_t pause_every = 150;
  // The engine's cap on kept latents (EngineOptions::max_kept_latent_bytes). The tiny model's
  // blocks are 12 KiB, so 1 MiB is reached after ~85 blocks, inside the warm-up: afterwards the
  // kept latents no longer grow, as on a GPU once its 512 MiB default is reached.
  double kept_latents_mib = 1;
  // Diagnostic: malloc_trim(0) every this many blocks (0: never), to tell memory malloc keeps
  // free inside its heaps (which the trim returns) from memory in use.
  int64_t trim_every = 0;
  // Test of the check itself: keep this many KiB (written, so resident) per block, never freed
  // until the end. A soak with it must fail on the anonymous RSS.
  double inject_leak_kib = 0;
  // The engine's sampling (EngineOptions): for telling apart what grows on a GPU. Kernels are
  // not sampled by default, as in the studio until its Kernels tab opens (CUPTI never attached:
  // once attached, CUPTI keeps ~45 KiB a block, docs/reliability.md); N lists one block in N.
  int kernel_sample_every = 0;
  int profile_every = EngineOptions{}.profile_every;
  // Kernel sampling on and off every this many blocks (0: on throughout), as a user opening and
  // closing the studio's Kernels tab (Engine::set_kernel_sampling; CUPTI stays attached).
  int64_t kernels_toggle_every = 0;
};

// What /proc says about this process.
struct Sample {
  double rss_mib = 0;
  // RSS split: anonymous memory (heap, tensors, stacks) and pages of mapped files (LibTorch's
  // code, ~250 MiB here: the kernel drops and refaults them with the page cache's pressure, so
  // they swing by tens of MiB on a busy machine). Growth is judged on the anonymous part.
  double anon_mib = 0;
  double file_mib = 0;
  int64_t fds = 0;
  int64_t threads = 0;
  int64_t files = 0;  // entries in the soak's work folder
};

Sample sample(const fs::path& work_dir) {
  Sample s;
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      status >> kib;
      s.rss_mib = kib / 1024.0;
    } else if (key == "RssAnon:") {
      double kib = 0;
      status >> kib;
      s.anon_mib = kib / 1024.0;
    } else if (key == "RssFile:") {
      double kib = 0;
      status >> kib;
      s.file_mib = kib / 1024.0;
    } else if (key == "Threads:") {
      status >> s.threads;
    }
    status.ignore(1 << 12, '\n');
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/self/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    ++s.fds;
  for (auto it = fs::directory_iterator(work_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    ++s.files;
  return s;
}

Sample max_of(const Sample& a, const Sample& b) {
  return {std::max(a.rss_mib, b.rss_mib),   std::max(a.anon_mib, b.anon_mib),
          std::max(a.file_mib, b.file_mib), std::max(a.fds, b.fds),
          std::max(a.threads, b.threads),   std::max(a.files, b.files)};
}

// The CUDA caching allocator's bytes (MiB): current, and peaks since the last reset_peak_memory.
struct GpuSample {
  double allocated_mib = 0, reserved_mib = 0;
  double peak_allocated_mib = 0, peak_reserved_mib = 0;
};

GpuSample gpu_sample(at::Device device) {
  const DeviceMemory m = device_memory(device);
  constexpr double kMiBPerGiB = 1024;
  return {m.allocated_gib * kMiBPerGiB, m.reserved_gib * kMiBPerGiB,
          m.peak_allocated_gib * kMiBPerGiB, m.peak_reserved_gib * kMiBPerGiB};
}

GpuSample max_of(const GpuSample& a, const GpuSample& b) {
  return {std::max(a.allocated_mib, b.allocated_mib), std::max(a.reserved_mib, b.reserved_mib),
          std::max(a.peak_allocated_mib, b.peak_allocated_mib),
          std::max(a.peak_reserved_mib, b.peak_reserved_mib)};
}

// Nearest-rank percentile (0..100) of unsorted values; 0 for none.
double percentile(std::vector<double> values, double pct) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(pct / 100 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double round1(double v) { return std::round(v * 10) / 10; }

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

const char* const kPrompts[] = {"a red fox running through snow", "a blue whale in the deep ocean",
                                "a green forest at dawn",         "neon city streets in the rain",
                                "a paper boat on a river",        "fireworks over a harbour",
                                "a cat asleep on a windowsill",   "sand dunes under a full moon"};
constexpr size_t kPromptCount = std::size(kPrompts);

int run(const SoakArgs& a) {
  if (!(a.minutes > 0) || !(a.warmup_minutes >= 0) || a.warmup_minutes >= a.minutes)
    throw ConfigError(
        fmt::format("--warmup-minutes {} must be below --minutes {}", a.warmup_minutes, a.minutes));
  std::vector<Preset> presets;
  for (const auto& name : split(a.presets)) presets.push_back(find_preset(a.presets_dir, name));
  if (presets.empty()) throw ConfigError("--presets: give at least one preset name");

  OwnedDir work;
  if (a.work_dir.empty()) {
    work.path = fs::temp_directory_path() / fmt::format("longlive-soak-{}", ::getpid());
    work.owned = true;
  } else {
    work.path = a.work_dir;
  }
  fs::create_directories(work.path);

  if (a.random != "tiny" && a.random != "full")
    throw ConfigError(fmt::format("--random '{}': expected tiny or full", a.random));
  ModelSpec model;
  model.tiny_random = a.random == "tiny";
  model.full_random = a.random == "full";
  model.random_prompts = model.full_random;  // prompts seeded by their text: no umT5 to load
  model.device = pick_device(a.device);
  const at::Device device = *model.device;
  const bool gpu = device.is_cuda();

  std::mutex mutex;  // guards the recorder and the fields below it
  std::condition_variable block_done;
#ifdef LONGLIVE_WITH_RECORDER
  std::unique_ptr<Recorder> recorder;
  int64_t recordings = 0;
#endif
  int64_t blocks = 0;  // over the whole soak (a preset change continues the video)
  int frame_height = 0, frame_width = 0;
  std::optional<std::string> error;

  Engine::Callbacks callbacks;
  callbacks.on_frame = [&](EngineFrame frame) {
    std::lock_guard lock(mutex);
    frame_height = static_cast<int>(frame.rgba.size(0));
    frame_width = static_cast<int>(frame.rgba.size(1));
#ifdef LONGLIVE_WITH_RECORDER
    if (recorder) {
      try {
        recorder->push(frame.rgba);
      } catch (const Error& e) {
        error = e.what();
      }
    }
#endif
  };
  callbacks.on_latents = [&](int64_t, const at::Tensor&) {
    {
      std::lock_guard lock(mutex);
      ++blocks;
    }
    block_done.notify_all();
  };
  callbacks.on_error = [&](const std::string& message) {
    {
      std::lock_guard lock(mutex);
      error = message;
    }
    block_done.notify_all();
  };

  EngineOptions options;
  options.max_kept_latent_bytes = static_cast<int64_t>(a.kept_latents_mib * (1 << 20));
  options.kernel_sample_every = a.kernel_sample_every;
  options.kernel_sampling = a.kernel_sample_every > 0;
  options.profile_every = a.profile_every;
  Engine engine(model, presets.front(), callbacks, 0, 0, options);
  engine.start(kPrompts[0], a.seed);

  const auto begin = Clock::now();
  const auto end = begin + std::chrono::duration<double, std::ratio<60>>(a.minutes);
  const auto warm = begin + std::chrono::duration<double, std::ratio<60>>(a.warmup_minutes);
  // The reference is the peak of the warm-up's second half (and after the first block): loading
  // builds the weights on the host first (the full random 1.3B: ~2.9 GiB of anonymous memory in
  // the first minute on the GPU box, ~1.2 GiB afterwards), and a reference with that peak in it
  // hid a host heap growing by ~47 KiB per block.
  const auto settled = begin + std::chrono::duration<double, std::ratio<60>>(a.warmup_minutes / 2);
  auto next_sample = begin;
  auto next_report = begin + std::chrono::duration<double>(a.report_seconds);
  std::optional<Sample> warm_peak;  // the warm-up's peak, the reference afterwards
  Sample peak;                      // over the current report interval
  Sample warmup_max;
  Sample settled_max;  // the warm-up's second half: the memory reference
  bool warm_done = false;
  // GPU memory, peaks per report interval (the allocator's peaks are reset after each report and
  // once the first block is out, so loading's peak is not the reference).
  GpuSample gpu_peak, gpu_warmup_max;
  std::optional<GpuSample> gpu_warm_peak;
  bool first_block_seen = false;
  double reference_from_s = -1;       // when the warm-up's reference began (s)
  int64_t reference_from_block = -1;  // and the blocks handled by then
  // The reference must see the whole workload: two recording cycles (an encoder running and
  // stopped) and a full round of presets, all inside the reference window.
  const int64_t cycle_blocks =
      std::max<int64_t>(2 * a.record_every, a.preset_every * static_cast<int64_t>(presets.size()));
  std::vector<std::unique_ptr<char[]>> injected_leak;  // --inject-leak-kib
  int64_t history_seen = 0;  // EngineStats::history.added() at the last report
  std::string failure;
  int64_t handled = 0;  // blocks whose commands were sent
  size_t prompt = 0, preset = 0;
  int64_t switches = 0, preset_changes = 0, pauses = 0;

  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - begin).count(); };
  auto report = [&](const char* phase) {
    nlohmann::ordered_json line = {{"t_s", std::round(elapsed_s())},
                                   {"phase", phase},
                                   {"blocks", handled},
                                   {"rss_mib", std::round(peak.rss_mib * 10) / 10},
                                   {"anon_mib", std::round(peak.anon_mib * 10) / 10},
                                   {"file_mib", std::round(peak.file_mib * 10) / 10},
                                   {"fds", peak.fds},
                                   {"threads", peak.threads},
                                   {"files", peak.files},
                                   {"switches", switches},
                                   {"preset_changes", preset_changes},
                                   {"pauses", pauses}};
#ifdef LONGLIVE_WITH_RECORDER
    line["recordings"] = recordings;
#endif
    // Bytes malloc hands out (all arenas, mmapped blocks included), beside RSS: growth in both
    // is data the process keeps, RSS growth alone is the heap's fragmentation.
    const struct mallinfo2 heap = mallinfo2();
    line["heap_in_use_mib"] =
        std::round(static_cast<double>(heap.uordblks + heap.hblkhd) / (1 << 20) * 10) / 10;
    // What malloc's arenas hold from the system (all arenas, without the mmapped blocks), now:
    // it grows with the heap's fragmentation even where the bytes in use do not, and is not
    // swung by the large tensors (which get their own mappings).
    line["heap_arenas_kib"] = heap.arena >> 10;
    const EngineStats stats = engine.stats();
    line["kept_latent_kib"] = stats.kept_latent_bytes >> 10;
    line["dropped_latent_blocks"] = stats.dropped_latent_blocks;
    // Block times of the interval, from the engine's latency history (its last 200 blocks; a
    // new video restarts its count).
    const int64_t added = stats.history.added();
    const int64_t fresh = added >= history_seen ? added - history_seen : added;
    history_seen = added;
    std::vector<double> block_ms;
    const auto& recent = stats.history.blocks();
    const auto take = std::min<size_t>(static_cast<size_t>(fresh), recent.size());
    for (auto it = recent.end() - static_cast<ptrdiff_t>(take); it != recent.end(); ++it)
      block_ms.push_back(it->ms);
    line["block_ms_n"] = block_ms.size();
    line["cupti_attached"] = KernelProfiler::attached();
    line["block_ms_p50"] = round1(percentile(block_ms, 50));
    line["block_ms_p99"] = round1(percentile(block_ms, 99));
    if (gpu) {
      line["cuda_allocated_mib"] = round1(gpu_peak.allocated_mib);
      line["cuda_allocated_peak_mib"] = round1(gpu_peak.peak_allocated_mib);
      line["cuda_reserved_mib"] = round1(gpu_peak.reserved_mib);
      line["cuda_reserved_peak_mib"] = round1(gpu_peak.peak_reserved_mib);
      if (gpu_warm_peak) {
        line["cuda_allocated_growth_pct"] =
            round1((gpu_peak.peak_allocated_mib / gpu_warm_peak->peak_allocated_mib - 1) * 100);
        line["cuda_reserved_growth_pct"] =
            round1((gpu_peak.peak_reserved_mib / gpu_warm_peak->peak_reserved_mib - 1) * 100);
      }
      gpu_peak = GpuSample{};
      reset_peak_memory(device);
    }
    if (warm_peak) {
      line["rss_growth_pct"] =
          std::round((peak.rss_mib / warm_peak->rss_mib - 1) * 1000) / 10;  // one decimal
      line["anon_growth_pct"] = std::round((peak.anon_mib / warm_peak->anon_mib - 1) * 1000) / 10;
    }
    std::cout << line.dump() << std::endl;
    peak = Sample{};
  };

  while (Clock::now() < end && failure.empty()) {
    int64_t done = 0;
    {
      std::unique_lock lock(mutex);
      block_done.wait_for(lock, std::chrono::milliseconds(200),
                          [&] { return blocks > handled || error.has_value(); });
      if (error) throw Error("soak: " + *error);
      done = blocks;
    }
    if (done > 0 && !first_block_seen) {
      first_block_seen = true;
      if (gpu) reset_peak_memory(device);
    }
    // Commands for every block finished since the last pass, as a performer would send them.
    for (; handled < done; ++handled) {
      const int64_t b = handled + 1;
      const std::string next = kPrompts[++prompt % kPromptCount];
      // Every 8th prompt is new text, so the prompt cache keeps evicting (short enough for the
      // tiny model's 32 tokens: no truncation warnings in the log).
      const std::string text = b % 8 == 0 ? fmt::format("#{} {}", b, next).substr(0, 30) : next;
      if (b % 2 == 1) {
        engine.switch_prompt(text);
      } else {
        PromptMix mix{{{text, 0.7}, {kPrompts[(prompt + 3) % kPromptCount], 0.3}},
                      Interpolation::slerp};
        engine.transition(mix, {.blocks = 2, .interpolation = Interpolation::slerp});
      }
      engine.prefetch_prompt(kPrompts[(prompt + 1) % kPromptCount]);
      ++switches;
      if (a.kernels_toggle_every > 0 && b % a.kernels_toggle_every == 0)
        engine.set_kernel_sampling((b / a.kernels_toggle_every) % 2 == 0);
      if (b % a.preset_every == 0) {
        engine.set_preset(presets[++preset % presets.size()]);
        ++preset_changes;
      }
#ifdef LONGLIVE_WITH_RECORDER
      if (b % a.record_every == 0) {
        std::unique_ptr<Recorder> finished;
        {
          std::lock_guard lock(mutex);
          if (recorder) {
            finished = std::move(recorder);
          } else if (frame_height > 0) {
            RecorderOptions ro;
            ro.path = work.path / fmt::format("soak-{}.mp4", recordings);
            ro.height = frame_height;
            ro.width = frame_width;
            ro.encoder_threads = live_encoder_threads();  // as the studio's live recording
            ro.model = "tiny-random";
            ro.seed = a.seed;
            recorder = std::make_unique<Recorder>(ro);
            recorder->mark_prompt(text, 0);
          }
        }
        // Finished outside the lock: the worker keeps delivering frames meanwhile.
        if (finished) {
          finished->finish();
          if (finished->frames_written() == 0)
            throw Error(fmt::format("soak: recording {} has no frames", finished->path().string()));
          fs::remove(finished->path());
          fs::remove(finished->sidecar_path());
          ++recordings;
        }
      }
#endif
      if (a.trim_every > 0 && b % a.trim_every == 0) malloc_trim(0);
      if (a.inject_leak_kib > 0) {
        const auto bytes = static_cast<size_t>(a.inject_leak_kib * 1024);
        injected_leak.push_back(std::make_unique<char[]>(bytes));
        std::fill_n(injected_leak.back().get(), bytes, static_cast<char>(b));
      }
      if (b % a.pause_every == a.pause_every / 2) {
        engine.pause();
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        engine.resume();
        ++pauses;
      }
    }
    const auto now = Clock::now();
    if (now >= next_sample) {
      const Sample s = sample(work.path);
      peak = max_of(peak, s);
      next_sample = now + std::chrono::seconds(1);
      std::optional<GpuSample> g;
      if (gpu && first_block_seen) {
        g = gpu_sample(device);
        gpu_peak = max_of(gpu_peak, *g);
      }
      if (!warm_done) {
        warmup_max = max_of(warmup_max, s);  // fds, threads, files: the whole warm-up
        if (first_block_seen && now >= settled) {
          if (reference_from_s < 0) {
            reference_from_s = elapsed_s();
            reference_from_block = handled;
          }
          settled_max = max_of(settled_max, s);
        }
        if (g) gpu_warmup_max = max_of(gpu_warmup_max, *g);
      } else if (warm_peak) {
        const double gpu_bound = 1 + a.max_gpu_growth / 100;
        if (s.anon_mib > warm_peak->anon_mib * (1 + a.max_rss_growth / 100))
          failure = fmt::format(
              "anonymous RSS {:.1f} MiB grew more than {}% over the warm-up's {:.1f} MiB (RSS "
              "{:.1f} MiB, warm-up {:.1f})",
              s.anon_mib, a.max_rss_growth, warm_peak->anon_mib, s.rss_mib, warm_peak->rss_mib);
        else if (s.fds > warm_peak->fds)
          failure = fmt::format("open file descriptors grew: {} (warm-up: at most {})", s.fds,
                                warm_peak->fds);
        else if (s.threads > warm_peak->threads)
          failure =
              fmt::format("threads grew: {} (warm-up: at most {})", s.threads, warm_peak->threads);
        else if (s.files > warm_peak->files)
          failure = fmt::format("files in {} grew: {} (warm-up: at most {})", work.path.string(),
                                s.files, warm_peak->files);
        else if (g && gpu_warm_peak &&
                 g->peak_reserved_mib > gpu_warm_peak->peak_reserved_mib * gpu_bound)
          failure = fmt::format(
              "CUDA memory reserved {:.1f} MiB grew more than {}% over the warm-up's peak {:.1f} "
              "MiB",
              g->peak_reserved_mib, a.max_gpu_growth, gpu_warm_peak->peak_reserved_mib);
        else if (g && gpu_warm_peak &&
                 g->peak_allocated_mib > gpu_warm_peak->peak_allocated_mib * gpu_bound)
          failure = fmt::format(
              "CUDA memory allocated {:.1f} MiB grew more than {}% over the warm-up's peak {:.1f} "
              "MiB",
              g->peak_allocated_mib, a.max_gpu_growth, gpu_warm_peak->peak_allocated_mib);
      }
    }
    // The warm-up lasts its time and a whole workload cycle inside the reference window (a
    // window shorter than a round of presets missed a preset's footprint in its peak).
    if (!warm_done && now >= warm && settled_max.anon_mib > 0 && reference_from_block >= 0 &&
        handled - reference_from_block >= cycle_blocks) {
      warm_done = true;
      warm_peak = warmup_max;
      warm_peak->rss_mib = settled_max.rss_mib;
      warm_peak->anon_mib = settled_max.anon_mib;
      warm_peak->file_mib = settled_max.file_mib;
      nlohmann::ordered_json line = {{"t_s", std::round(elapsed_s())},
                                     {"phase", "warm"},
                                     {"blocks", handled},
                                     {"rss_mib", std::round(warm_peak->rss_mib * 10) / 10},
                                     {"anon_mib", std::round(warm_peak->anon_mib * 10) / 10},
                                     {"file_mib", std::round(warm_peak->file_mib * 10) / 10},
                                     {"fds", warm_peak->fds},
                                     {"threads", warm_peak->threads},
                                     {"files", warm_peak->files},
                                     {"reference_from_s", std::round(reference_from_s)}};
      if (gpu) {
        gpu_warm_peak = gpu_warmup_max;
        line["cuda_allocated_peak_mib"] = round1(gpu_warm_peak->peak_allocated_mib);
        line["cuda_reserved_peak_mib"] = round1(gpu_warm_peak->peak_reserved_mib);
      }
      std::cout << line.dump() << std::endl;
    }
    if (now >= next_report) {
      report(warm_done ? "run" : "warmup");
      next_report = now + std::chrono::duration<double>(a.report_seconds);
    }
  }
  if (peak.rss_mib > 0) report(warm_done ? "run" : "warmup");
  engine.stop();
#ifdef LONGLIVE_WITH_RECORDER
  {
    std::lock_guard lock(mutex);
    if (recorder) recorder->cancel();
  }
#endif
  if (!warm_done && failure.empty())
    failure = fmt::format(
        "the warm-up never ended ({} blocks, {} in its reference window; it needs {} there)",
        handled, reference_from_block < 0 ? 0 : handled - reference_from_block, cycle_blocks);
  nlohmann::ordered_json result = {
      {"phase", "result"}, {"ok", failure.empty()},
      {"blocks", handled}, {"minutes", std::round(elapsed_s() / 6) / 10},
      {"model", a.random}, {"device", device.str()}};
  if (!failure.empty()) result["failure"] = failure;
  std::cout << result.dump() << std::endl;
  return failure.empty() ? 0 : 3;
}

const Registrar kSoak("soak", [](CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "soak", "Run the tiny model live for a long time; check RSS, fds and threads stay flat");
  auto a = std::make_shared<SoakArgs>();
  cmd->add_option("--minutes", a->minutes, "How long to run")->capture_default_str();
  cmd->add_option("--warmup-minutes", a->warmup_minutes,
                  "Warm-up; the peak of its second half is the reference (it also lasts at "
                  "least 2 recording cycles)")
      ->capture_default_str();
  cmd->add_option("--report-seconds", a->report_seconds, "Seconds between JSON lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-rss-growth", a->max_rss_growth,
                  "Allowed growth of the anonymous RSS (heap, tensors, stacks) in percent")
      ->capture_default_str();
  cmd->add_option("--presets", a->presets, "Presets to cycle through, comma-separated")
      ->capture_default_str();
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  cmd->add_option("--random", a->random,
                  "Random model: tiny (64x64) or full (1.3B geometry at the preset's resolution)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tiny", "full"}));
  cmd->add_option("--max-gpu-growth", a->max_gpu_growth,
                  "On CUDA: allowed growth of the allocated and reserved peaks in percent")
      ->capture_default_str();
  cmd->add_option("--work-dir", a->work_dir,
                  "Folder for the recordings (default: a temporary one, removed)");
  cmd->add_option("--seed", a->seed, "Noise seed");
  cmd->add_option("--trim-every", a->trim_every,
                  "Diagnostic: return malloc's free heap pages to the system every N blocks")
      ->capture_default_str();
  cmd->add_option("--inject-leak-kib", a->inject_leak_kib,
                  "Test of the check: keep this many KiB per block until the end (must fail)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kernel-sample-every", a->kernel_sample_every,
                  "On CUDA: list one block's kernels with CUPTI in this many (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kernels-toggle-every", a->kernels_toggle_every,
                  "Turn kernel sampling off and on every N blocks (the Kernels tab closed/opened)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--profile-every", a->profile_every,
                  "With CUDA graphs: time the regions of one block in this many")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kept-latents-mib", a->kept_latents_mib,
                  "The engine's cap on latents kept for the export (the oldest are dropped)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--record-every", a->record_every, "Blocks between recording start/stop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--preset-every", a->preset_every, "Blocks between preset changes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--pause-every", a->pause_every, "Blocks between pause/resume")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
