#include "longlive/performance.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/env.h"
#include "longlive/async_decoder.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "longlive/text_encoder.h"
#include "timeline_store.h"

namespace longlive {

Performance::Performance(ModelSpec model, Preset preset, int height, int width)
    : Performance(std::make_shared<SessionFactory>(std::move(model)), std::move(preset), height,
                  width) {}

Performance::Performance(std::shared_ptr<SessionFactory> factory, Preset preset, int height,
                         int width)
    : factory_(std::move(factory)),
      preset_(std::move(preset)),
      height_(height),
      width_(width),
      timeline_(std::make_unique<TimelineStore>()),
      inputs_(std::make_unique<LiveInputs>(
          InputOpener{}, std::filesystem::temp_directory_path() / "longlive-captures")) {}

Performance::~Performance() = default;

void Performance::ensure_session() {
  if (session()) return;
  if (plan_.ranks > 1) {
    // Bakes are refused on several ranks (bake_loras), so there are none to merge again.
    ranked_ = RankedSession::open(factory_->model(), factory_->overrides(), preset_, height_,
                                  width_, plan_);
  } else {
    session_ = factory_->open(preset_, height_, width_);
    for (const auto& bake : bakes_) factory_->bake_style_loras(*session_, bake);
    warm_inputs();
  }
  sync_loras();
}

void Performance::warm_inputs() {
  const bool wanted =
      warm_inputs_.value_or(session_->device.is_cuda() && session_->runtime.reserve_up_front &&
                            factory_->vace_available());
  if (!wanted) return;
  try {
    const double ms = inputs_->warm(*factory_, *session_);
    log::info(
        "inputs readied for a first pick in {:.0f} ms (encoder built, {}x{} black blocks "
        "recorded, cuDNN's plans found on the encode worker)",
        ms, session_->height, session_->width);
  } catch (const std::exception& e) {
    log::warn("inputs not readied ahead ({}): the first video or camera picked readies them",
              e.what());
  }
}

void Performance::drop_session() {
  session_.reset();
  ranked_.reset();
}

void Performance::set_ranks(const RankPlan& plan) {
  if (active_) throw Error(fmt::format("cannot move to {} ranks while a video runs", plan.ranks));
  if (plan.ranks < 1)
    throw ConfigError(fmt::format("{} ranks: a stream needs at least one", plan.ranks));
  if (plan.ranks > 1 && !bakes_.empty())
    throw ConfigError(
        "several ranks: unload the baked style LoRAs first (the ranks share the DiT)");
  if (plan != plan_) drop_session();
  plan_ = plan;
}

StreamGenerator* Performance::generator() const {
  if (ranked_) return &ranked_->stream().rank(0);
  return session_ ? session_->generator.get() : nullptr;
}

void Performance::each_generator(const std::function<void(StreamGenerator&)>& change) {
  if (ranked_)
    ranked_->stream().each([&](StreamGenerator& g, int) { change(g); });
  else
    change(*session_->generator);
}

BakeResult Performance::bake_loras() {
  std::vector<ActiveStyleLora> up;
  std::vector<std::pair<std::string, double>> moves;
  for (const auto& f : loras_)
    if (f.strength != 0) {
      up.push_back({f.lora, f.strength});
      moves.emplace_back(f.name, f.strength);
    }
  if (up.empty())
    throw ConfigError(
        loras_.empty() ? "bake: no style LoRA is loaded, nothing to bake"
                       : "bake: every style-LoRA fader is at 0, nothing to bake (raise one first)");
  if (plan_.ranks > 1)
    throw ConfigError(fmt::format(
        "bake: not on {} ranks (they share the DiT's weights); bake on one GPU", plan_.ranks));
  ensure_session();
  const BakeResult result = factory_->bake_style_loras(*session_, up);
  bakes_.push_back(std::move(up));
  std::vector<std::string> what;
  for (const auto& [name, strength] : moves)
    what.push_back(fmt::format("{} {:.2f}", name, strength));
  bake_moves_.push_back(std::move(moves));
  for (auto& f : loras_)
    if (f.strength != 0) {
      f.baked += f.strength;
      f.strength = 0;
    }
  sync_loras();  // the baked faders' side path stops
  if (active_) record(EventKind::lora_bake);
  log::info("style LoRAs baked into the DiT ({}): {} matrices in {:.1f} ms", fmt::join(what, ", "),
            result.matrices, result.ms);
  return result;
}

void Performance::sync_loras() {
  Session* const live = session();
  if (!live) return;
  live->loras.clear();
  for (const auto& f : loras_) live->loras.push_back({f.lora, f.strength});
  each_generator([&](StreamGenerator& g) { g.set_style_loras(live->loras); });
}

void Performance::set_lora(const std::string& name, const std::filesystem::path& file,
                           double strength) {
  if (!std::isfinite(strength) || strength < 0 || strength > kMaxLoraStrength)
    throw ConfigError(
        fmt::format("LoRA '{}': strength {} is outside 0..{}", name, strength, kMaxLoraStrength));
  auto it =
      std::find_if(loras_.begin(), loras_.end(), [&](const Fader& f) { return f.name == name; });
  if (it == loras_.end()) {
    ensure_session();  // the DiT's configuration checks the LoRA's shapes
    auto lora = std::make_shared<StyleLora>(load_style_lora(file, generator()->options().model));
    lora->name = name;
    loras_.push_back({name, file, std::move(lora), 0});
    it = std::prev(loras_.end());
  }
  it->strength = strength;
  sync_loras();
  if (active_) {
    TimelineEvent e = event(EventKind::lora);
    e.lora = name;
    e.lora_file = it->file.string();
    e.strength = strength;
    record(std::move(e));
  }
}

std::string Performance::load_lora(const std::filesystem::path& file, const std::string& name) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(file, ec);
  if (ec) absolute = file;
  for (const auto& f : loras_)
    if (f.file == absolute && (name.empty() || name == f.name)) return f.name;
  std::string chosen = name.empty() ? absolute.stem().string() : name;
  if (name.empty()) {
    const std::string stem = chosen;
    for (int i = 2; std::any_of(loras_.begin(), loras_.end(),
                                [&](const Fader& f) { return f.name == chosen; });
         ++i)
      chosen = fmt::format("{}-{}", stem, i);
  } else if (std::any_of(loras_.begin(), loras_.end(),
                         [&](const Fader& f) { return f.name == name; })) {
    throw ConfigError(fmt::format("a LoRA named '{}' is already loaded", name));
  }
  set_lora(chosen, absolute, 0);
  return chosen;
}

void Performance::set_lora_strength(const std::string& name, double strength) {
  const auto it =
      std::find_if(loras_.begin(), loras_.end(), [&](const Fader& f) { return f.name == name; });
  if (it == loras_.end()) {
    std::vector<std::string> names;
    for (const auto& f : loras_) names.push_back(f.name);
    throw ConfigError(
        fmt::format("no LoRA named '{}' is loaded (loaded: {})", name,
                    names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
  }
  set_lora(name, it->file, strength);
}

void Performance::set_inputs(InputOpener opener, std::filesystem::path capture_dir) {
  inputs_ = std::make_unique<LiveInputs>(std::move(opener), std::move(capture_dir));
}

void Performance::set_vace(const VaceRequest& request) {
  ensure_session();  // the session's size, device and VACE weights
  const VaceRequest recorded = inputs_->set_vace(request, factory(), *session());
  if (active_) {
    TimelineEvent e = event(EventKind::vace);
    e.vace = recorded;
    record(std::move(e));
  }
}

void Performance::clear_vace() {
  if (!inputs_->has_vace()) return;
  inputs_->clear_vace(generator());
  if (active_) record(EventKind::vace_off);
}

void Performance::set_vace_scale(double scale) {
  inputs_->set_vace_scale(scale);
  if (active_) {
    TimelineEvent e = event(EventKind::vace_scale);
    e.strength = scale;
    record(std::move(e));
  }
}

void Performance::set_v2v(const V2vRequest& request) {
  ensure_session();
  const V2vRequest recorded = inputs_->set_v2v(request, factory(), *session());
  if (active_) {
    TimelineEvent e = event(EventKind::v2v);
    e.v2v = recorded;
    record(std::move(e));
  }
}

void Performance::clear_v2v() {
  if (!inputs_->has_v2v()) return;
  inputs_->clear_v2v(generator());
  if (active_) record(EventKind::v2v_off);
}

void Performance::set_v2v_strength(double strength) {
  inputs_->set_v2v_strength(strength);
  if (active_) {
    TimelineEvent e = event(EventKind::v2v_strength);
    e.strength = strength;
    record(std::move(e));
  }
}

void Performance::clear_inputs() {
  inputs_->clear_vace(generator());
  inputs_->clear_v2v(generator());
}

InputStatus Performance::input_status() const {
  return inputs_->status(session() ? &factory() : nullptr);
}

void Performance::flush_input_captures() const { inputs_->flush_captures(); }

void Performance::record_inputs() {
  if (auto vace = inputs_->vace_now()) {
    TimelineEvent e = event(EventKind::vace);
    e.vace = std::move(*vace);
    record(std::move(e));
  }
  if (auto v2v = inputs_->v2v_now()) {
    TimelineEvent e = event(EventKind::v2v);
    e.v2v = std::move(*v2v);
    record(std::move(e));
  }
}

void Performance::unload_loras() {
  if (loras_.empty()) throw ConfigError("unload: no style LoRA is loaded, nothing to unload");
  if (!bake_moves_.empty()) {
    UnloadedLoras before;
    for (const auto& f : loras_) before.faders.emplace_back(f.name, f.file);
    before.bakes = std::move(bake_moves_);
    unloaded_.push_back(std::move(before));
    bake_moves_.clear();
  }
  std::vector<std::string> names;
  for (const auto& f : loras_) names.push_back(f.name);
  loras_.clear();
  sync_loras();  // an empty set: the side path and its graphs go
  if (active_) record(EventKind::lora_unload);
  log::info("style LoRAs unloaded: {}{}", fmt::join(names, ", "),
            bakes_.empty() ? "" : " (what was baked stays in the weights)");
}

void Performance::clear_loras() {
  if (!bakes_.empty()) {
    if (active_)
      throw Error(
          "unload the style LoRAs after stopping the video: a bake is undone "
          "by rebuilding the DiT");
    drop_session();  // its DiT holds the bakes; the next one is built from the host weights
    bakes_.clear();
    bake_moves_.clear();
    unloaded_.clear();
  }
  loras_.clear();
  sync_loras();
}

TimelineEvent Performance::event(EventKind kind) const {
  TimelineEvent e;
  e.kind = kind;
  e.block = blocks();
  e.time_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began_).count();
  return e;
}

void Performance::record(TimelineEvent e) {
  std::lock_guard lock(timeline_mutex_);
  timeline_->append(e);
}

void Performance::record(EventKind kind) { record(event(kind)); }

int64_t Performance::blocks() const {
  std::lock_guard lock(timeline_mutex_);
  return timeline_->blocks();
}

Timeline Performance::timeline() const {
  std::lock_guard lock(timeline_mutex_);
  return timeline_->timeline();
}

bool Performance::timeline_empty() const {
  std::lock_guard lock(timeline_mutex_);
  return timeline_->empty();
}

void Performance::start(const PromptMix& mix, uint64_t seed) {
  mix.validate("prompts");
  ensure_session();
  Session& live = *session();
  const at::Tensor embeds = live.embed(mix);  // fails before anything changes
  if (!active_) {
    Timeline fresh;
    fresh.model = factory_->model().tiny_random ? "tiny-random" : factory_->model().folder.string();
    fresh.preset = preset_.name;
    fresh.height = live.height;
    fresh.width = live.width;
    {
      std::lock_guard lock(timeline_mutex_);
      timeline_->reset(fresh);
    }
    began_ = std::chrono::steady_clock::now();
  }
  const bool new_timeline = !active_;
  mix_ = mix;
  seed_ = seed;
  each_generator([&](StreamGenerator& g) { g.start(embeds, seed); });
  if (live.decoder) live.decoder->reset();
  inputs_->reset();  // the inputs' encoders start a new video too
  active_ = true;
  paused_ = false;
  {
    TimelineEvent e = event(EventKind::start);
    e.mix = mix;
    e.seed = seed;
    record(std::move(e));
  }
  // A new timeline states the faders set before it began, so a replay loads and sets them too:
  // with bakes before it, every fader loaded first (at 0, in load order: the side path stacks
  // them in that order), then each bake's strengths and the bake, then today's strengths. Bakes
  // of LoRAs unloaded since come first, each group closed by its unload.
  if (new_timeline) {
    using Files = std::vector<std::pair<std::string, std::filesystem::path>>;
    auto fader = [&](const Files& files, const std::string& name, double strength) {
      const auto f =
          std::find_if(files.begin(), files.end(), [&](const auto& x) { return x.first == name; });
      TimelineEvent l = event(EventKind::lora);
      l.lora = name;
      l.lora_file = f->second.string();
      l.strength = strength;
      record(std::move(l));
    };
    auto bakes = [&](const Files& files, const std::vector<BakeMoves>& moves) {
      for (const auto& [name, file] : files) fader(files, name, 0);
      for (const auto& bake : moves) {
        for (const auto& [name, strength] : bake) fader(files, name, strength);
        record(EventKind::lora_bake);
      }
    };
    for (const auto& group : unloaded_) {
      bakes(group.faders, group.bakes);
      record(EventKind::lora_unload);
    }
    Files files;
    for (const auto& f : loras_) files.emplace_back(f.name, f.file);
    if (!bake_moves_.empty()) bakes(files, bake_moves_);
    for (const auto& f : loras_)
      if (bake_moves_.empty() || f.strength != 0) fader(files, f.name, f.strength);
  }
  if (new_timeline) record_inputs();  // likewise the inputs, from the frames they are at
}

void Performance::cut(const PromptMix& mix) {
  if (!active_) throw Error("cut: no video is running (start one first)");
  const at::Tensor embeds = session()->embed(mix);
  each_generator([&](StreamGenerator& g) { g.switch_prompt(embeds); });
  mix_ = mix;
  TimelineEvent e = event(EventKind::cut);
  e.mix = mix;
  record(std::move(e));
}

void Performance::transition(const PromptMix& mix, const TransitionOptions& options) {
  if (!active_) throw Error("transition: no video is running (start one first)");
  const at::Tensor embeds = session()->embed(mix);
  each_generator([&](StreamGenerator& g) { g.transition_to(embeds, options); });
  mix_ = mix;
  TimelineEvent e = event(EventKind::transition);
  e.mix = mix;
  e.transition = options;
  record(std::move(e));
}

PresetChange Performance::set_preset(const Preset& preset) {
  preset_ = preset;
  if (active_) {
    TimelineEvent e = event(EventKind::preset);
    e.preset = preset.name;
    record(std::move(e));
  }
  if (ranked_ && !active_) ranked_.reset();  // opened again at the next start, with the preset
  if (!session()) return {};
  try {
    return ranked_ ? ranked_->change_preset(preset) : factory_->change_preset(*session_, preset);
  } catch (...) {
    abort();  // a half-changed session cannot continue
    throw;
  }
}

void Performance::set_resolution(int height, int width) {
  if (active_)
    throw Error(
        fmt::format("cannot change the video size to {}x{} while a video runs: stop it "
                    "first",
                    height, width));
  const Session* live = session();
  const bool session_fits = live && live->height == height && live->width == width;
  if (!session_fits && (height != height_ || width != width_)) drop_session();
  height_ = height;
  width_ = width;
}

void Performance::pause() {
  if (!active_ || paused_) return;
  paused_ = true;
  record(EventKind::pause);
}

void Performance::resume() {
  if (!active_ || !paused_) return;
  paused_ = false;
  record(EventKind::resume);
}

void Performance::stop() {
  if (!active_) return;
  record(EventKind::stop);
  active_ = false;
  paused_ = false;
}

void Performance::prefetch(const std::string& prompt) {
  ensure_session();
  session()->prompts->prefetch(prompt);
}

void Performance::abort() {
  drop_session();
  active_ = false;
  paused_ = false;
}

bool Performance::in_transition() const {
  const StreamGenerator* g = generator();
  return g && g->transition_active();
}

bool Performance::inputs_wait_for_frames() const {
  const StreamGenerator* lead = generator();
  return running() && lead && inputs_->waits_for_frames(*lead, blocks());
}

at::Tensor Performance::next_block() { return *next_block_unless({}); }

std::optional<at::Tensor> Performance::next_block_unless(const std::function<bool()>& abandon) {
  if (!running()) throw Error("next_block: the video is not running");
  // The inputs' frames for this block; one whose source failed is dropped (and that recorded, so
  // a replay drops it at the same block).
  StreamGenerator& lead = *generator();
  const auto feeding = std::chrono::steady_clock::now();
  for (const EventKind off : inputs_->before_block(lead, blocks(), input_messages_)) record(off);
  last_inputs_ms_ = ms_since(feeding);
  std::optional<at::Tensor> latents;
  if (ranked_) {
    // The block's inputs were encoded once, on rank 0: every other rank takes them (each moves
    // them to its device). A block is not given up on several ranks: they would have to agree
    // at the same step.
    // Encoded ahead on a side stream, they are ready on rank 0's stream only: the host waits
    // for that before the other ranks copy them on theirs.
    if (lead.vace() || lead.v2v()) wait_for_current_stream(lead.options().device);
    ranked_->stream().each([&](StreamGenerator& g, int rank) {
      if (rank == 0) return;
      g.set_vace(lead.vace());
      g.set_v2v(lead.v2v());
    });
    latents = ranked_->stream().next_block();
  } else {
    latents = abandon ? lead.next_block_unless(abandon) : lead.next_block();
  }
  if (!latents) return latents;
  std::lock_guard lock(timeline_mutex_);
  timeline_->count_block();
  return latents;
}

const c10::Event* Performance::latents_ready() const {
  if (ranked_ || env_is("LONGLIVE_DECODE_AFTER_CONTEXT_PASS", "1")) return nullptr;
  const StreamGenerator* lead = generator();
  return lead ? lead->latents_ready() : nullptr;
}

void Performance::apply(const TimelineEvent& e, const PresetLookup& presets) {
  switch (e.kind) {
    case EventKind::start:
      start(e.mix, e.seed);
      break;
    case EventKind::cut:
      cut(e.mix);
      break;
    case EventKind::transition:
      transition(e.mix, e.transition);
      break;
    case EventKind::preset:
      set_preset(presets(e.preset));
      break;
    case EventKind::pause:
      pause();
      break;
    case EventKind::resume:
      resume();
      break;
    case EventKind::stop:
      stop();
      break;
    case EventKind::lora:
      set_lora(e.lora, e.lora_file, e.strength);
      break;
    case EventKind::lora_bake:
      bake_loras();
      break;
    case EventKind::lora_unload:
      unload_loras();
      break;
    case EventKind::vace:
      set_vace(e.vace);
      break;
    case EventKind::vace_off:
      clear_vace();
      break;
    case EventKind::vace_scale:
      set_vace_scale(e.strength);
      break;
    case EventKind::v2v:
      set_v2v(e.v2v);
      break;
    case EventKind::v2v_off:
      clear_v2v();
      break;
    case EventKind::v2v_strength:
      set_v2v_strength(e.strength);
      break;
  }
}

void replay(const Timeline& timeline, const ModelSpec& model, const PresetLookup& presets,
            const std::function<void(const ReplayBlock&)>& on_block, const std::string& origin,
            const InputOpener& inputs, const RankPlan& ranks) {
  check_presets(timeline, presets, origin);
  Performance p(model, presets(timeline.preset), timeline.height, timeline.width);
  p.set_ranks(ranks);
  p.set_inputs(inputs, std::filesystem::temp_directory_path() / "longlive-captures");
  size_t next = 0;
  const auto& events = timeline.events;
  while (p.blocks() < timeline.blocks) {
    while (next < events.size() && events[next].block == p.blocks())
      p.apply(events[next++], presets);
    if (!p.running())
      throw ConfigError(fmt::format(
          "{}: the video is {} at block {} but the timeline has {} blocks (a pause or stop "
          "without a resume or start at that block)",
          origin, p.active() ? "paused" : "stopped", p.blocks(), timeline.blocks));
    const int64_t index = p.blocks();
    at::Tensor latents = p.next_block();
    on_block({index, std::move(latents), p.session(), p.mix().label()});
  }
  while (next < events.size()) p.apply(events[next++], presets);
}

}  // namespace longlive
