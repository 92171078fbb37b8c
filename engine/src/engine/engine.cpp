#include "longlive/engine.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "core/event_poll.h"
#include "encode_ahead.h"
#include "input_opening.h"
#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/kernel_profiler.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "longlive/text_encoder.h"
#include "runtime/gpu_memory_cap.h"

namespace longlive {
namespace {

using Clock = std::chrono::steady_clock;

// A VACE or video-to-video input picked, removed, or its scale or strength moved.
bool is_input_event(EventKind k) {
  return k == EventKind::vace || k == EventKind::vace_off || k == EventKind::vace_scale ||
         k == EventKind::v2v || k == EventKind::v2v_off || k == EventKind::v2v_strength;
}

// A whole non-negative decimal number ("12", not "", "-1", "12x" or one past int64_t).
std::optional<int64_t> count_of(std::string_view text) {
  int64_t n = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || n < 0)
    return std::nullopt;
  return n;
}

// The N of a test hook's "block:N" (-1 for anything else, "block:3x" too).
int64_t block_of_hook(std::string_view value) {
  if (value.rfind("block:", 0) != 0) return -1;
  return count_of(value.substr(6)).value_or(-1);
}

// Test hook for the out-of-memory path, which a CPU cannot reach otherwise:
// LONGLIVE_INJECT_OOM=load (when a session is built) or block:N (before block N of a video)
// makes the worker throw LibTorch's out-of-memory error there, once per engine.
struct InjectedOom {
  bool at_load = false;
  int64_t at_block = -1;
};

std::optional<InjectedOom> injected_oom_from_env() {
  const char* value = std::getenv("LONGLIVE_INJECT_OOM");
  if (!value || !*value) return std::nullopt;
  const std::string v = value;
  const InjectedOom oom{.at_load = v == "load", .at_block = block_of_hook(v)};
  if (!oom.at_load && oom.at_block < 0) {
    log::warn("LONGLIVE_INJECT_OOM='{}' ignored: expected 'load' or 'block:N'", v);
    return std::nullopt;
  }
  log::warn("LONGLIVE_INJECT_OOM={}: this engine will fake running out of GPU memory once", v);
  return oom;
}

// Test hook for a real out-of-memory on a GPU: LONGLIVE_CAP_GPU_MEMORY=load:MiB (when a session
// is built) or block:N:MiB (before block N of a video) caps LibTorch's CUDA caching allocator at
// what the tensors on the device take at that moment plus MiB (GpuMemoryCap), once per engine,
// so the allocator itself throws where the engine next needs more. Only a CUDA engine is capped.
struct GpuMemoryCapHook {
  bool at_load = false;
  int64_t at_block = -1;
  int64_t headroom_mib = 0;
};

std::optional<GpuMemoryCapHook> gpu_memory_cap_from_env(at::Device device) {
  const char* value = std::getenv("LONGLIVE_CAP_GPU_MEMORY");
  if (!value || !*value) return std::nullopt;
  const std::string v = value;
  const std::string_view text = v;
  std::optional<GpuMemoryCapHook> hook;
  if (text.rfind("load:", 0) == 0) {
    if (const auto mib = count_of(text.substr(5)))
      hook = GpuMemoryCapHook{.at_load = true, .headroom_mib = *mib};
  } else if (text.rfind("block:", 0) == 0) {
    const std::string_view rest = text.substr(6);
    const size_t colon = rest.find(':');
    const auto block = count_of(rest.substr(0, colon));
    const auto mib =
        colon == std::string_view::npos ? std::nullopt : count_of(rest.substr(colon + 1));
    if (block && mib) hook = GpuMemoryCapHook{.at_block = *block, .headroom_mib = *mib};
  }
  constexpr int64_t kMaxMib = int64_t{1} << 40;  // MiB << 20 stays an int64_t
  if (!hook || hook->headroom_mib > kMaxMib) {
    log::warn(
        "LONGLIVE_CAP_GPU_MEMORY='{}' ignored: expected 'load:MiB' or 'block:N:MiB' (MiB: the GPU "
        "memory allowed above what is allocated at that point)",
        v);
    return std::nullopt;
  }
  if (!device.is_cuda()) {
    log::warn("LONGLIVE_CAP_GPU_MEMORY={} ignored: this engine runs on {}, not a CUDA device", v,
              device.str());
    return std::nullopt;
  }
  log::warn("LONGLIVE_CAP_GPU_MEMORY={}: this engine will cap its GPU memory once", v);
  return hook;
}

// Test hook for a decode that fails (a CPU's decoder does not): LONGLIVE_INJECT_DECODE_FAILURE=
// block:N makes the decode of block N throw, once per engine.
std::optional<int64_t> injected_decode_failure_from_env() {
  const char* value = std::getenv("LONGLIVE_INJECT_DECODE_FAILURE");
  if (!value || !*value) return std::nullopt;
  const std::string v = value;
  const int64_t block = block_of_hook(v);
  if (block < 0) {
    log::warn("LONGLIVE_INJECT_DECODE_FAILURE='{}' ignored: expected 'block:N'", v);
    return std::nullopt;
  }
  log::warn("LONGLIVE_INJECT_DECODE_FAILURE={}: this engine will fail a decode once", v);
  return block;
}

// A decoder's failure says so and names the block; an out-of-memory error stays one (the studio
// offers low_memory for it), and LibTorch's C++ backtrace is left out.
template <class Decode>
auto decoding(int64_t block, Decode&& decode) {
  try {
    return decode();
  } catch (const c10::OutOfMemoryError&) {
    throw;
  } catch (const OutOfMemoryError&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(
        fmt::format("the live decoder failed on block {}: {}", block, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw Error(fmt::format("the live decoder failed on block {}: {}", block, e.what()));
  }
}

[[noreturn]] void throw_injected_oom(const std::string& where) {
  TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory (injected by LONGLIVE_INJECT_OOM ",
                   where, ")");
  std::abort();  // not reached
}
}  // namespace

// A control command: a timeline event (applied exactly as a replayed one), or a prefetch or a
// playback, which are not events of the video.
struct Engine::Command {
  enum class Kind { event, prefetch, play, load_lora };
  Kind kind = Kind::event;
  TimelineEvent event;
  Preset preset;                             // a preset event's preset (the event names it)
  std::string prompt;                        // prefetch; load_lora: the file
  std::shared_ptr<const Timeline> timeline;  // play
  PresetLookup presets;                      // play
  Clock::time_point issued = Clock::now();
  // A picked video or camera being opened off the engine thread: the command (and those after
  // it) waits until it is open (input_opening.h).
  std::shared_ptr<InputOpening> opening;

  bool ready() const { return !opening || opening->done(); }
  // Whether it may apply before an input still opening that was asked for before it: a prompt
  // switch, transition, fader move or prompt prefetch does not depend on the inputs, and a
  // performer's switch should not wait for a camera to start.
  bool passes_openings() const {
    if (kind == Kind::prefetch) return true;
    return kind == Kind::event &&
           (event.kind == EventKind::cut || event.kind == EventKind::transition ||
            event.kind == EventKind::lora);
  }
  // An input picked, removed, or its scale or strength moved: held back behind an input still
  // opening, and passed by the commands above.
  bool about_inputs() const { return kind == Kind::event && is_input_event(event.kind); }
  static Command of(EventKind kind) {
    Command c;
    c.event.kind = kind;
    return c;
  }
  // Whether the block in progress stops being the video's next block once this applies: a
  // switch, transition, preset change, pause, stop, restart, replay, or an input picked or
  // removed (the camera shows a block sooner). Fader, scale and strength moves are not (a knob
  // sends a stream of them; they take the next block as before).
  bool outdates_block() const {
    if (kind == Kind::play) return true;
    if (kind != Kind::event) return false;
    switch (event.kind) {
      case EventKind::start:
      case EventKind::cut:
      case EventKind::transition:
      case EventKind::preset:
      case EventKind::pause:
      case EventKind::stop:
      case EventKind::vace:
      case EventKind::vace_off:
      case EventKind::v2v:
      case EventKind::v2v_off:
        return true;
      default:
        return false;
    }
  }
};

Engine::Engine(ModelSpec model, Preset preset, Callbacks callbacks, int height, int width,
               EngineOptions options)
    : model_(std::move(model)),
      callbacks_(std::move(callbacks)),
      height_(height),
      width_(width),
      options_(options),
      inputs_(std::make_unique<OfferedInputs>(options_.inputs)) {
  stats_.preset = preset.name;
  host_frames_.store(options_.host_frames);
  kernel_sampling_.store(options_.kernel_sampling);
  performance_ = std::make_unique<Performance>(model_, std::move(preset), height_, width_);
  performance_->set_ranks(options_.ranks);
  performance_->set_warm_inputs(options_.warm_inputs);
  performance_->set_inputs(inputs_->opener(),
                           options_.capture_dir.empty()
                               ? std::filesystem::temp_directory_path() / "longlive-captures"
                               : options_.capture_dir);
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  worker_.join();
  // Inputs still being opened are waited for here, outside the lock their ends take.
  std::deque<Command> unapplied;
  {
    std::lock_guard lock(mutex_);
    unapplied.swap(commands_);
  }
}

void Engine::post(Command command) {
  {
    std::lock_guard lock(mutex_);
    commands_.push_back(std::move(command));
    mark_outdated_locked();
  }
  wake_.notify_all();
}

std::vector<size_t> Engine::applicable_locked() const {
  // The ready commands in front. An input still opening (the first command not ready) holds back
  // the input commands after it; those that do not depend on the inputs (never opening anything
  // themselves: ready) pass them, up to the first command of another kind (a start, stop,
  // preset...), which keeps its place.
  std::vector<size_t> applicable;
  size_t i = 0;
  for (; i < commands_.size() && commands_[i].ready(); ++i) applicable.push_back(i);
  for (++i; i < commands_.size(); ++i) {  // past the one held
    const Command& c = commands_[i];
    if (c.passes_openings())
      applicable.push_back(i);
    else if (!c.about_inputs())
      break;
  }
  return applicable;
}

std::deque<Engine::Command> Engine::take_applicable_locked() {
  const std::vector<size_t> applicable = applicable_locked();
  std::deque<Command> batch;
  for (const size_t i : applicable) batch.push_back(std::move(commands_[i]));
  for (auto i = applicable.rbegin(); i != applicable.rend(); ++i)
    commands_.erase(commands_.begin() + static_cast<std::ptrdiff_t>(*i));
  return batch;
}

bool Engine::has_applicable_locked() const { return !applicable_locked().empty(); }

void Engine::mark_outdated_locked() {
  for (const size_t i : applicable_locked())
    if (commands_[i].outdates_block()) {
      block_outdated_ = true;
      return;
    }
}

std::shared_ptr<InputOpening> Engine::open_ahead(const InputSource& source,
                                                 std::optional<InputSource>& camera_asked,
                                                 const std::optional<InputSource>& other_asked) {
  // A camera asked for last by this kind of input (again: another preprocessor or mode) or by
  // the other kind is read through the capture LiveInputs has, so it is not opened again.
  std::optional<InputSource> before, other;
  {
    std::lock_guard lock(mutex_);
    before = std::exchange(camera_asked,
                           source.kind == InputKind::camera ? std::optional(source) : std::nullopt);
    other = other_asked;
  }
  auto same_camera = [&](const std::optional<InputSource>& asked) {
    return asked && asked->path == source.path && asked->format == source.format;
  };
  if (source.kind == InputKind::camera && (same_camera(before) || same_camera(other)))
    return nullptr;
  const bool opened_by_frames = source.kind == InputKind::video || source.kind == InputKind::camera;
  if (!options_.open_inputs_ahead || !opened_by_frames || !options_.inputs.frames) return nullptr;
  return std::make_shared<InputOpening>(options_.inputs, source, height_, width_, [this] {
    {
      std::lock_guard lock(mutex_);
      mark_outdated_locked();
    }
    wake_.notify_all();
  });
}

void Engine::start(const std::string& prompt, uint64_t seed) {
  start(PromptMix::single(prompt), seed);
}
void Engine::start(const PromptMix& mix, uint64_t seed) {
  Command c = Command::of(EventKind::start);
  c.event.mix = mix;
  c.event.seed = seed;
  post(std::move(c));
}
void Engine::switch_prompt(const std::string& prompt) { cut(PromptMix::single(prompt)); }
void Engine::cut(const PromptMix& mix) {
  Command c = Command::of(EventKind::cut);
  c.event.mix = mix;
  post(std::move(c));
}
void Engine::transition(const PromptMix& mix, const TransitionOptions& options) {
  Command c = Command::of(EventKind::transition);
  c.event.mix = mix;
  c.event.transition = options;
  post(std::move(c));
}
void Engine::prefetch_prompt(const std::string& prompt) {
  Command c;
  c.kind = Command::Kind::prefetch;
  c.prompt = prompt;
  post(std::move(c));
}
void Engine::set_preset(const Preset& preset) {
  Command c = Command::of(EventKind::preset);
  c.event.preset = preset.name;
  c.preset = preset;
  post(std::move(c));
}
void Engine::play(const Timeline& timeline, PresetLookup presets) {
  Command c;
  c.kind = Command::Kind::play;
  c.timeline = std::make_shared<const Timeline>(timeline);
  c.presets = std::move(presets);
  post(std::move(c));
}
void Engine::load_lora(const std::filesystem::path& file, const std::string& name) {
  Command c;
  c.kind = Command::Kind::load_lora;
  c.prompt = file.string();
  c.event.lora = name;
  post(std::move(c));
}
void Engine::set_lora_strength(const std::string& name, double strength) {
  Command c = Command::of(EventKind::lora);
  c.event.lora = name;
  c.event.strength = strength;
  post(std::move(c));
}
void Engine::bake_loras() { post(Command::of(EventKind::lora_bake)); }
void Engine::unload_loras() { post(Command::of(EventKind::lora_unload)); }
void Engine::set_vace(const VaceRequest& request) {
  Command c = Command::of(EventKind::vace);
  c.event.vace = request;
  c.opening = open_ahead(request.source, vace_camera_asked_, v2v_camera_asked_);
  post(std::move(c));
}
void Engine::clear_vace() {
  {
    std::lock_guard lock(mutex_);
    vace_camera_asked_.reset();
  }
  post(Command::of(EventKind::vace_off));
}
void Engine::set_vace_scale(double scale) {
  Command c = Command::of(EventKind::vace_scale);
  c.event.strength = scale;
  post(std::move(c));
}
void Engine::set_v2v(const V2vRequest& request) {
  Command c = Command::of(EventKind::v2v);
  c.event.v2v = request;
  c.opening = open_ahead(request.source, v2v_camera_asked_, vace_camera_asked_);
  post(std::move(c));
}
void Engine::clear_v2v() {
  {
    std::lock_guard lock(mutex_);
    v2v_camera_asked_.reset();
  }
  post(Command::of(EventKind::v2v_off));
}
void Engine::set_v2v_strength(double strength) {
  Command c = Command::of(EventKind::v2v_strength);
  c.event.strength = strength;
  post(std::move(c));
}
void Engine::pause() { post(Command::of(EventKind::pause)); }
void Engine::resume() { post(Command::of(EventKind::resume)); }
void Engine::stop() { post(Command::of(EventKind::stop)); }

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  EngineStats s = stats_;
  for (const Command& c : commands_)
    if (!c.ready()) {
      s.inputs.opening =
          (c.event.kind == EventKind::vace ? c.event.vace.source : c.event.v2v.source).describe();
      break;
    }
  return s;
}

Timeline Engine::timeline() const {
  // The worker's Performance holds the only copy of the events (one kept here as well doubled
  // the timeline's memory, which grows with every event of a session).
  return performance_->timeline();
}

at::Tensor Engine::session_latents() const {
  const KeptLatents kept = kept_latents();  // concatenated outside the lock
  return kept.blocks.empty() ? at::Tensor() : at::cat(kept.blocks, 1);
}

KeptLatents Engine::kept_latents() const {
  std::lock_guard lock(mutex_);
  return latents_;
}

void Engine::deliver_oldest_block() {
  const size_t queued = queued_.size();
  while (queued_.size() == queued && deliver_next_part(/*wait=*/true)) {
  }
}

bool Engine::deliver_next_part(bool wait) {
  Session& session = *performance_->session();
  if (queued_.empty()) return false;
  QueuedBlock& block = queued_.front();
  const auto waiting = Clock::now();
  std::optional<DecodedPart> part =
      decoding(block.index, [&] { return session.decoder->take_part(wait); });
  if (!part) return false;
  const double decode_wait_ms = ms_since(waiting);
  DecodedBlock& decoded = part->frames;
  // Unless asked for, the device frames are dropped here, so the block's memory is reused.
  if (!options_.device_frames) decoded.device = at::Tensor();
  const at::Tensor& rgba = decoded.host;
  const auto now = Clock::now();
  const int64_t frames = rgba.defined() ? rgba.size(0) : decoded.device.size(0);
  for (int64_t f = 0; f < frames; ++f) {
    EngineFrame frame{rgba.defined() ? rgba[f] : at::Tensor(),
                      frame_index_++,
                      block.prompt,
                      block.first_of_prompt && part->first_frame + f == 0,
                      {}};
    if (decoded.device.defined()) frame.device = {decoded.device[f], decoded.ready};
    if (callbacks_.on_frame) callbacks_.on_frame(std::move(frame));
  }
  const double deliver_ms = ms_since(now);
  block.frames_delivered += frames;
  block.deliver_ms += deliver_ms;
  std::lock_guard lock(mutex_);
  stats_.frames = frame_index_;
  stats_.thread_time.deliver_ms += deliver_ms;
  stats_.thread_time.decode_wait_ms += decode_wait_ms;
  // The latencies end at the first frames out.
  if (part->first_frame == 0) {
    if (block.switch_issued)
      stats_.last_switch_ms =
          std::chrono::duration<double, std::milli>(now - *block.switch_issued).count();
    if (block.input_issued)
      stats_.last_input_ms =
          std::chrono::duration<double, std::milli>(now - *block.input_issued).count();
  }
  if (part->last) {
    const int64_t d2h_bytes = session.decoder->last_d2h_bytes();
    stats_.d2h_bytes_per_frame =
        block.frames_delivered > 0 ? static_cast<double>(d2h_bytes) / block.frames_delivered : 0;
    if (d2h_bytes > 0) stats_.host_copied_frames += block.frames_delivered;
    stats_.deliver_ms = block.deliver_ms;
    queued_.pop_front();
  }
  return true;
}

void Engine::flush_frames() {
  Session* session = performance_->session();
  while (session && session->decoder->pending() > 0) deliver_oldest_block();
  queued_.clear();
}

void Engine::run() {
  // Below the UI in the CPU scheduler: on a CPU-bound machine (the CPU test mode, software GL)
  // the display thread, the X server and the GL rasteriser must not queue behind generation.
  // ATen's CPU worker threads are started from here and inherit it. Without CUDA and with
  // EngineOptions::yield_cpu: nice 19, the lowest share that still always makes progress (an
  // idle-class thread could starve, and a caller joining it would wait as long). With CUDA this
  // thread mostly waits for the device and only feeds it: a small nice.
  const int niceness = options_.yield_cpu && !at::hasCUDA() ? 19 : 5;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), niceness) != 0)
    log::debug("engine: could not lower the worker thread's priority");
  // CUPTI is attached only once kernels are sampled (attached, it keeps memory for every kernel
  // the process runs): a studio whose Kernels tab never opens never attaches it. It is not
  // detached again here: cuptiFinalize while the display and decoder threads use CUDA ended the
  // studio with "unspecified launch failure" on an H100 (2026-12-05). Kernels of graphs
  // captured before the attach are listed (seen on the H100). Without CUDA or CUPTI this only
  // notes why the kernels view stays empty.
  std::optional<KernelProfiler> kernel_profiler;
  bool kernel_profiler_failed = false;  // prepare() refused: not retried at every block
  int64_t next_kernel_sample = -1;      // the next block to sample; -1: the next one eligible
  auto follow_kernel_sampling = [&](bool starting) {
    const bool wanted = kernel_sampling_.load() && options_.kernel_sample_every > 0 &&
                        at::hasCUDA() && !kernel_profiler_failed;
    if (wanted && !kernel_profiler) {
      if (const std::string why = KernelProfiler::prepare(); why.empty()) {
        kernel_profiler.emplace();
        // Turned on live: whoever did wants a table soon. On from the start: the middle of the
        // first period, past the first blocks (whose graphs may still be captured).
        next_kernel_sample = starting ? options_.kernel_sample_every / 2 : -1;
      } else {
        kernel_profiler_failed = true;
        log::info("engine: kernels are not sampled: {}", why);
      }
    } else if (!wanted && kernel_profiler) {
      kernel_profiler.reset();  // no more samples; CUPTI stays attached (above)
    }
  };
  follow_kernel_sampling(true);
  Performance& perf = *performance_;
  std::optional<InjectedOom> injected_oom = injected_oom_from_env();
  std::optional<int64_t> injected_decode_failure = injected_decode_failure_from_env();
  std::optional<GpuMemoryCapHook> cap_hook = gpu_memory_cap_from_env(perf.factory().device());
  GpuMemoryCap gpu_memory_cap;  // lifted at the latest when the worker ends
  auto cap_gpu_memory = [&](at::Device device, const std::string& where) {
    const int64_t mib = cap_hook->headroom_mib;
    cap_hook.reset();
    const GpuMemoryCap::Applied cap = gpu_memory_cap.apply(device, mib << 20);
    log::warn("LONGLIVE_CAP_GPU_MEMORY: {} capped {}: {} MiB allowed ({} MiB allocated + {} MiB)",
              device.str(), where, cap.allowed_bytes >> 20, cap.allocated_bytes >> 20, mib);
  };
  // Waits for the work queued on the current stream, handing out the parts of blocks decoded
  // meanwhile; returns the time spent handing them out.
  auto wait_delivering = [&](at::Device device) -> double {
    if (!device.is_cuda()) {
      wait_for_current_stream(device);
      return 0.0;
    }
    c10::Event queued(c10::DeviceType::CUDA);
    queued.record(c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(device));
    double delivering_ms = 0;
    poll_until(queued, [&] {
      const auto delivering = Clock::now();
      if (!deliver_next_part(/*wait=*/false)) return PollTurn::idle;
      delivering_ms += ms_since(delivering);
      return PollTurn::busy;
    });
    return delivering_ms;
  };
  // A cut or transition marks the next block for the latency plot and the switch latency.
  Clock::time_point switch_issued{};
  int64_t abandoned_block = -1;  // the last block index given up (never twice in a row)
  bool first_after_switch = false;
  // An input picked mid-stream marks the next block for the input latency (last_input_ms).
  Clock::time_point input_issued{};
  bool first_after_input = false;
  auto publish = [&](const char* state) {
    {
      std::lock_guard lock(mutex_);
      if (state) stats_.state = state;
      stats_.preset = perf.preset().name;
      if (const Session* session = perf.session()) {
        stats_.capability = session->runtime.capabilities.describe();
        stats_.fallbacks = session->runtime.fallbacks;
      }
      stats_.loras.clear();
      for (const auto& f : perf.loras()) stats_.loras.push_back({f.name, f.strength, f.baked});
      stats_.inputs = perf.input_status();
      // An input gone (dropped, cleared, never opened): its camera, asked for again, is opened
      // ahead again (open_ahead).
      if (stats_.inputs.vace.empty()) vace_camera_asked_.reset();
      if (stats_.inputs.v2v.empty()) v2v_camera_asked_.reset();
    }
    if (callbacks_.on_stats) callbacks_.on_stats(stats());
  };
  auto finish_timeline = [&] {
    // The camera frames the timeline names are written on a thread of their own: all in the
    // files before it is handed out (a failed write also drops the input at its next block).
    try {
      perf.flush_input_captures();
    } catch (const Error& error) {
      if (callbacks_.on_error) callbacks_.on_error(error.what());
    }
    if (callbacks_.on_timeline && !perf.timeline_empty()) callbacks_.on_timeline(perf.timeline());
  };
  // A (re)start begins a new video: frame numbers, stats and kept latents start over.
  std::string preset_marker;
  auto new_video = [&] {
    frame_index_ = 0;
    abandoned_block = -1;  // block indices start again
    std::lock_guard lock(mutex_);
    latents_ = KeptLatents();
    auto loras = std::move(stats_.loras);
    const double bake_ms = stats_.lora_bake_ms;
    const int64_t bake_matrices = stats_.lora_bake_matrices;
    // The thread's sums are the engine's, not the video's: they go on.
    const EngineStats::ThreadTime thread_time = stats_.thread_time;
    stats_ = EngineStats();
    stats_.thread_time = thread_time;
    stats_.loras = std::move(loras);
    stats_.lora_bake_ms = bake_ms;
    stats_.lora_bake_matrices = bake_matrices;
    stats_.device = perf.session()->device.str();
    stats_.ranks = perf.ranks();
    stats_.state = "running";
  };
  // A timeline being played: its next event waits for its block.
  struct Playback {
    std::shared_ptr<const Timeline> timeline;
    PresetLookup presets;
    size_t next = 0;
  };
  std::optional<Playback> playback;
  auto stop_video = [&] {
    flush_frames();
    const bool was_active = perf.active();
    perf.stop();
    if (was_active) finish_timeline();
  };
  // Every event, live or played back, goes through Performance::apply (which records it); this
  // adds what the engine does around it: frames flushed before anything resets or swaps the
  // decoder, a new video's stats, the marks of the latency plot.
  auto apply = [&](const TimelineEvent& e, const PresetLookup& presets, Clock::time_point issued) {
    switch (e.kind) {
      case EventKind::start:
        flush_frames();
        if (!perf.session()) publish("loading");
        if (injected_oom && injected_oom->at_load && !perf.session()) {
          injected_oom.reset();
          throw_injected_oom("at load");
        }
        if (cap_hook && cap_hook->at_load && !perf.session())
          cap_gpu_memory(perf.factory().device(), "at load");
        perf.apply(e, presets);
        first_after_switch = false;
        first_after_input = false;  // an input set before the start: no mid-stream latency
        preset_marker.clear();
        new_video();
        break;
      case EventKind::cut:
      case EventKind::transition:
        if (!perf.active()) break;  // nothing to switch (stopped meanwhile)
        perf.apply(e, presets);
        switch_issued = issued;
        first_after_switch = true;
        break;
      case EventKind::preset:
        // The video continues (SessionFactory::change_preset); its first block under the new
        // preset is marked with the preset's name.
        {
          const auto change_begin = Clock::now();
          flush_frames();
          perf.apply(e, presets);
          if (perf.active()) preset_marker = e.preset;
          std::lock_guard lock(mutex_);
          stats_.last_preset_change_ms = ms_since(change_begin);
          break;
        }
      case EventKind::pause:
        flush_frames();
        perf.apply(e, presets);
        break;
      case EventKind::resume:
        perf.apply(e, presets);
        break;
      case EventKind::stop:
        stop_video();
        break;
      case EventKind::lora:
        // A live move names a loaded LoRA; a played one may load its file first.
        if (e.lora_file.empty())
          perf.set_lora_strength(e.lora, e.strength);
        else
          perf.apply(e, presets);
        break;
      case EventKind::lora_bake: {
        const BakeResult bake = perf.bake_loras();
        std::lock_guard lock(mutex_);
        stats_.lora_bake_ms = bake.ms;
        stats_.lora_bake_matrices = bake.matrices;
        break;
      }
      case EventKind::lora_unload:
        perf.unload_loras();
        break;
      case EventKind::vace:
      case EventKind::vace_off:
      case EventKind::vace_scale:
      case EventKind::v2v:
      case EventKind::v2v_off:
      case EventKind::v2v_strength:
        if (e.kind == EventKind::vace || e.kind == EventKind::v2v) {
          if (!perf.session()) publish("loading");
        }
        perf.apply(e, presets);  // opens the input: throws (nothing marked) when it cannot
        if ((e.kind == EventKind::vace || e.kind == EventKind::v2v) && perf.active()) {
          input_issued = issued;
          first_after_input = true;
          std::lock_guard lock(mutex_);
          stats_.last_input_open_ms = ms_since(issued);
        }
        break;
    }
  };
  for (;;) {
    std::deque<Command> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || has_applicable_locked() || perf.running(); });
      if (quit_) return;
      // An input still opening holds itself and the commands that depend on it back; the video
      // goes on.
      batch = take_applicable_locked();
      block_outdated_ = false;
    }
    try {
      for (auto& c : batch) {
        switch (c.kind) {
          case Command::Kind::event: {
            const TimelineEvent& e = c.event;
            if (e.kind == EventKind::start || e.kind == EventKind::stop) playback.reset();
            const PresetLookup lookup = [&c](const std::string&) { return c.preset; };
            try {
              const OfferedInputs::Offer offer(*inputs_, c.opening);  // a source opened ahead
              apply(e, lookup, c.issued);
            } catch (const Error& error) {
              // A bad prompt, blend or fader value is the performer's typo, and an input that
              // does not open (a file, a camera, no VACE weights) the performer's choice: it is
              // reported and the video goes on as it was.
              const bool typo = dynamic_cast<const ConfigError*>(&error) &&
                                (e.kind == EventKind::cut || e.kind == EventKind::transition ||
                                 e.kind == EventKind::lora || e.kind == EventKind::lora_bake ||
                                 e.kind == EventKind::lora_unload);
              const bool input =
                  is_input_event(e.kind) && !dynamic_cast<const OutOfMemoryError*>(&error);
              if (!typo && !input) throw;
              if (e.kind == EventKind::vace || e.kind == EventKind::v2v) {
                // The camera it asked for is not known to run: asked again, it opens ahead.
                std::lock_guard lock(mutex_);
                (e.kind == EventKind::vace ? vace_camera_asked_ : v2v_camera_asked_).reset();
              }
              if (callbacks_.on_error) callbacks_.on_error(error.what());
            }
            break;
          }
          case Command::Kind::load_lora:
            try {
              if (!perf.session()) publish("loading");
              perf.load_lora(c.prompt, c.event.lora);
            } catch (const Error& error) {
              // A LoRA that does not fit (or a missing file) leaves the video as it is.
              if (dynamic_cast<const OutOfMemoryError*>(&error)) throw;
              if (callbacks_.on_error) callbacks_.on_error(error.what());
            }
            break;
          case Command::Kind::prefetch:  // builds the session if needed: a prompt set warms up
            if (!perf.session()) publish("loading");
            perf.prefetch(c.prompt);
            break;
          case Command::Kind::play: {
            stop_video();
            perf.clear_loras();  // the timeline states its own faders and inputs
            perf.clear_inputs();
            check_presets(*c.timeline, c.presets, "timeline");
            // The timeline plays at its own size and preset, whatever the studio ended on: an
            // exact replay (the frames that follow have the timeline's size).
            perf.set_resolution(c.timeline->height, c.timeline->width);
            if (perf.preset().name != c.timeline->preset) {
              TimelineEvent e;
              e.kind = EventKind::preset;
              e.preset = c.timeline->preset;
              apply(e, c.presets, c.issued);
            }
            playback = Playback{c.timeline, c.presets};
            break;
          }
        }
      }
      if (playback) {
        const auto& events = playback->timeline->events;
        // A played start begins a fresh timeline: blocks count from 0 again.
        while (playback->next < events.size() &&
               (events[playback->next].block == perf.blocks() || playback->next == 0))
          apply(events[playback->next++], playback->presets, Clock::now());
        // Done, or stopped; a pause waits for the performer's resume.
        if (playback->next >= events.size() || !perf.active()) playback.reset();
      }
      if (!perf.running()) {
        flush_frames();
        publish(perf.active() ? "paused" : "idle");
        continue;
      }

      Session& session = *perf.session();
      follow_kernel_sampling(false);
      const auto begin = Clock::now();
      if (first_after_input && input_trace())
        log::info("input trace: its first block begins {:.1f} ms after the pick",
                  ms_since(input_issued));
      const bool switched = first_after_switch;
      const bool transitioning = perf.in_transition();
      const int64_t block = perf.blocks();
      if (injected_oom && injected_oom->at_block == block) {
        injected_oom.reset();
        throw_injected_oom(fmt::format("before block {}", block));
      }
      if (cap_hook && cap_hook->at_block == block)
        cap_gpu_memory(session.device, fmt::format("before block {}", block));
      // Generate block k (regions profiled on the compute stream), queue its decode on the decode
      // stream, hand out block k-1's frames (decoded while block k ran), then wait for block k so
      // the next commands apply to block k+1.
      // CUDA graphs replay only without a region profiler (regions need eager launches to be
      // timed), so with graphs on only one block in options_.profile_every runs profiled.
      StreamGenerator& generator = *perf.generator();
      const bool graphs = generator.cuda_graphs_active();
      // The ranks run their layers on threads of their own, which a region profiler does not see.
      const bool profiled = perf.ranks() == 1 && (!graphs || options_.profile_every <= 1 ||
                                                  block % options_.profile_every == 0);
      if (profiled) session.profiler->activate();
      // One block in options_.kernel_sample_every, not a region-profiled one, has its kernels
      // listed by CUPTI (graph replays included): the DiT only, not the decode. The first comes
      // at once after sampling is turned on; a new video (blocks from 0) starts over.
      if (next_kernel_sample > block + options_.kernel_sample_every) next_kernel_sample = -1;
      const bool kernel_sample = kernel_profiler && !profiled && session.device.is_cuda() &&
                                 block >= next_kernel_sample && kernel_profiler->start();
      if (kernel_sample) next_kernel_sample = block + options_.kernel_sample_every;
      // A command that outdates the block in progress gives it up between two denoising steps
      // and applies to it instead (once per block: a stream of switches still makes progress).
      // Meanwhile block k-1's frames go out as soon as they are decoded, as they would after
      // the block was queued.
      // (On several ranks Performance runs the block whole.)
      const bool may_abandon = options_.abandon_blocks && abandoned_block != block;
      // Asked over and over while the host waits for a step (StreamGenerator::next_block_unless):
      // it hands out the blocks already decoded, without waiting for one.
      auto between_steps = [&] {
        while (deliver_next_part(/*wait=*/false)) {
        }
        return block_outdated_.load();
      };
      // An input's first block ran its DiT alone (first_block_alone), and this block's
      // inputs are encoded when they are fed, in front of its DiT: the first block's frames go
      // out before that wait (its decode, queued right after its DiT, is about done).
      // Likewise when this block's inputs wait for a live camera to film their frames (paced by
      // it): the block before's frames go out now, not after that wait (up to a block of camera
      // time, 0.75 s at 16 fps).
      if ((first_block_alone() && !queued_.empty() && queued_.front().input_issued) ||
          perf.inputs_wait_for_frames())
        while (session.decoder->pending() > 0) deliver_oldest_block();
      const std::optional<at::Tensor> generated =
          may_abandon ? perf.next_block_unless(between_steps) : perf.next_block();
      if (kernel_sample) kernel_profiler->stop();
      {
        std::lock_guard lock(mutex_);
        stats_.thread_time.inputs_ms += perf.last_inputs_ms();
      }
      if (!generated) {
        session.profiler->deactivate();
        // The partial block's regions and kernels are dropped (collected once it has run).
        if (profiled) session.profiler->collect();
        if (kernel_sample) {
          wait_for_current_stream(session.device);
          kernel_profiler->collect();
        }
        abandoned_block = block;
        std::lock_guard lock(mutex_);
        ++stats_.abandoned_blocks;
        continue;
      }
      const at::Tensor& latents = *generated;
      // An input whose source failed was dropped; the performer hears why.
      for (const std::string& message : perf.take_input_messages())
        if (callbacks_.on_error) callbacks_.on_error(message);
      session.profiler->deactivate();
      if (callbacks_.on_latents) callbacks_.on_latents(block, latents);
      // Without device frames the host copy is the only copy.
      session.decoder->set_host_copies(host_frames_.load() || !options_.device_frames);
      decoding(block, [&] {
        if (injected_decode_failure == block) {
          injected_decode_failure.reset();
          throw Error("injected by LONGLIVE_INJECT_DECODE_FAILURE");
        }
        session.decoder->submit(latents, perf.latents_ready());
      });
      queued_.push_back({block, perf.mix().label(), switched,
                         switched ? std::optional(switch_issued) : std::nullopt,
                         first_after_input ? std::optional(input_issued) : std::nullopt});
      first_after_input = false;
      while (session.decoder->pending() > 1) deliver_oldest_block();
      // Waits for block k's DiT (an unprofiled block: for its last kernel, the clean context
      // pass), handing block k's frames out meanwhile, part by part as they are decoded beside
      // that pass.
      const RegionTimes regions = profiled ? session.profiler->collect() : RegionTimes{};
      const auto dit_waiting = Clock::now();
      const double delivering_ms = profiled ? 0.0 : wait_delivering(session.device);
      const double dit_wait_ms = ms_since(dit_waiting) - delivering_ms;
      std::optional<KernelTable> kernels;
      if (kernel_sample) kernels = kernel_profiler->collect();
      const auto end = Clock::now();
      const double block_ms = std::chrono::duration<double, std::milli>(end - begin).count();
      const int64_t block_frames = 4 * generator.options().frames_per_block;
      at::Tensor kept = latents.to(at::kCPU);  // small: 16 x h x w per latent frame
      {
        std::lock_guard lock(mutex_);
        latents_.blocks.push_back(kept.is_same(latents) ? latents.clone() : std::move(kept));
        latents_.bytes += static_cast<int64_t>(latents_.blocks.back().nbytes());
        // Oldest first out of the cap (a vector: a few hundred handles, dropped one at a time).
        size_t drop = 0;
        while (drop < latents_.blocks.size() && latents_.bytes > options_.max_kept_latent_bytes) {
          latents_.bytes -= static_cast<int64_t>(latents_.blocks[drop].nbytes());
          latents_.dropped_latent_frames += latents_.blocks[drop].size(1);
          ++drop;
        }
        latents_.blocks.erase(latents_.blocks.begin(), latents_.blocks.begin() + drop);
        latents_.dropped_blocks += static_cast<int64_t>(drop);
        stats_.kept_latent_bytes = latents_.bytes;
        stats_.dropped_latent_blocks = latents_.dropped_blocks;
        stats_.state = "running";
        stats_.blocks += 1;
        stats_.last_block_ms = block_ms;
        stats_.thread_time.blocks += 1;
        stats_.thread_time.block_ms += block_ms;
        stats_.thread_time.dit_wait_ms += dit_wait_ms;
        stats_.fps = block_frames * 1000.0 / std::max(block_ms, 1e-3);
        stats_.history.add({block_ms, switched, transitioning, std::exchange(preset_marker, {})});
        if (profiled) {
          stats_.regions.clear();
          for (const auto& [name, ms] : regions.ms) stats_.regions.push_back({name, ms});
          stats_.regions.push_back({"decode (own stream)", session.decoder->last_decode_ms()});
          std::sort(stats_.regions.begin(), stats_.regions.end(),
                    [](const RegionTime& x, const RegionTime& y) { return x.ms > y.ms; });
          stats_.uncovered_fraction = regions.uncovered_fraction();
          stats_.regions_block = stats_.blocks - 1;
        }
        if (kernels) {
          stats_.kernels = std::move(kernels->rows);
          stats_.kernels_block = block;
        }
        stats_.cuda_graphs = graphs;
        stats_.graph_replays = generator.stats().graph_replays;
        stats_.graph_captures = generator.stats().graph_captures;
        stats_.graph_eager_forwards = generator.stats().graph_eager_forwards;
        const auto cache = session.prompts->stats();
        stats_.prompt_cache_hits = cache.hits;
        stats_.prompt_cache_misses = cache.misses;
      }
      first_after_switch = false;
      publish(nullptr);
    } catch (const std::exception& e) {
      std::string message = e.what();
      // LibTorch's what() carries a C++ backtrace: the banner gets the message alone.
      if (auto* oom = dynamic_cast<const c10::OutOfMemoryError*>(&e))
        message = std::string(
                      "out of GPU memory: try the low_memory preset or a smaller "
                      "resolution (") +
                  oom->what_without_backtrace() + ")";
      else if (auto* c10e = dynamic_cast<const c10::Error*>(&e))
        message = c10e->what_without_backtrace();
      log::error("engine: {}", message);
      playback.reset();
      // The blocks generated before the failure still reach on_frame (a recording keeps them),
      // unless the decoder itself is what failed.
      try {
        flush_frames();
      } catch (const std::exception& flush_error) {
        log::warn("engine: the frames of the last block are lost ({})", flush_error.what());
      }
      queued_.clear();
      const bool was_active = perf.active();
      perf.abort();
      if (was_active) finish_timeline();
      {
        std::lock_guard lock(mutex_);
        stats_.state = "error";
      }
      if (callbacks_.on_error) callbacks_.on_error(message);
      publish(nullptr);
      if (gpu_memory_cap.active()) {
        // Stands for the user freeing GPU memory (closing another program) after reading the
        // error: the restart that follows has the device's memory again.
        try {
          gpu_memory_cap.lift();
          log::warn("LONGLIVE_CAP_GPU_MEMORY: the GPU memory cap is lifted after the error");
        } catch (const std::exception& lift_error) {
          log::warn("LONGLIVE_CAP_GPU_MEMORY: the cap could not be lifted ({})", lift_error.what());
        }
      }
    }
  }
}

}  // namespace longlive
