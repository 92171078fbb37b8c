#include "longlive/ranked_session.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "model/causal_wan.h"

namespace longlive {
namespace {

// Which device rank r runs on: the model's device for all (CPU, or a shared GPU), else CUDA r.
at::Device rank_device(at::Device first, int rank, bool one_device) {
  if (one_device) return first;
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(rank));
}

RankBackend default_backend(at::Device first, bool one_device) {
  if (first.is_cuda() && !one_device && rank_backend_available(RankBackend::nccl))
    return RankBackend::nccl;
  return RankBackend::gloo;
}

}  // namespace

std::unique_ptr<RankedSession> RankedSession::open(const ModelSpec& model,
                                                   const SessionOverrides& overrides,
                                                   const Preset& preset, int height, int width,
                                                   const RankPlan& plan) {
  if (plan.ranks < 1)
    throw ConfigError(fmt::format("{} ranks: a stream needs at least one", plan.ranks));
  const at::Device first =
      model.device.value_or(at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU));
  const bool one_device = plan.share_device || first.is_cpu() || plan.ranks == 1;
  if (!one_device) {
    const int visible = at::detail::getCUDAHooks().deviceCount();
    if (first.index() > 0)
      throw ConfigError(
          fmt::format("{} ranks start at CUDA device 0 (rank r on device r); the model asks for {}",
                      plan.ranks, first.str()));
    if (plan.ranks > visible)
      throw ConfigError(fmt::format(
          "{} ranks: {} CUDA devices are visible (sharing one device puts every rank on it)",
          plan.ranks, visible));
  }
  const RankBackend backend = plan.backend.value_or(default_backend(first, one_device));
  if (!rank_backend_available(backend))
    throw ConfigError(fmt::format("rank backend {}: not in this build", to_string(backend)));
  if (backend == RankBackend::nccl && one_device && plan.ranks > 1)
    throw ConfigError("rank backend nccl: one CUDA device per rank (Gloo shares a device)");

  std::unique_ptr<RankedSession> ranked(new RankedSession());
  ranked->backend_ = backend;
  ranked->one_device_ = one_device;
  const int sessions = one_device ? 1 : plan.ranks;
  for (int r = 0; r < sessions; ++r) {
    ModelSpec rank_model = model;
    rank_model.device = rank_device(first, r, one_device);
    SessionOverrides rank_overrides = overrides;
    if (r > 0) rank_overrides.text_encoder = rank_overrides.live_decoder = false;
    ranked->factories_.push_back(std::make_unique<SessionFactory>(rank_model, rank_overrides));
    ranked->sessions_.push_back(ranked->factories_.back()->open(preset, height, width));
    ranked->devices_.push_back(*rank_model.device);
  }
  std::vector<const StreamGenerator*> bases;
  for (int r = 0; r < plan.ranks; ++r)
    bases.push_back(ranked->sessions_[one_device ? 0 : static_cast<size_t>(r)]->generator.get());
  ranked->stream_ = ParallelStream::create(bases, backend);
  // The sessions' own generators are not run: free their KV caches (the ranks hold the DiTs).
  for (auto& session : ranked->sessions_) session->generator.reset();
  log::info("{} ranks over {} ({}): preset {}, {}x{}", plan.ranks,
            one_device ? first.str() : fmt::format("{} CUDA devices", plan.ranks),
            to_string(backend), preset.name, ranked->sessions_.front()->height,
            ranked->sessions_.front()->width);
  return ranked;
}

RankedSession::~RankedSession() = default;

void RankedSession::synchronize() const {
  for (const at::Device& d : devices_) longlive::synchronize(d);
}

PresetChange RankedSession::change_preset(const Preset& preset) {
  const int ranks = stream_->ranks();
  std::vector<std::shared_ptr<RankGroup>> groups;
  for (int r = 0; r < ranks; ++r) groups.push_back(stream_->rank(r).model()->rank_group());
  const GeneratorOptions running = stream_->rank(0).options();
  // Each session's factory says what its ranks run next (one session for them all on one device).
  std::vector<SessionFactory::StreamPreset> next;
  for (size_t i = 0; i < sessions_.size(); ++i)
    next.push_back(factories_[i]->change_preset_beside(*sessions_[i], preset, running));
  auto next_of = [&](int r) -> SessionFactory::StreamPreset& {
    return next[one_device_ ? 0 : static_cast<size_t>(r)];
  };
  PresetChange change = next.front().change;
  if (next.front().same_generator) return change;
  // The rank's DiT under the preset: its own when the weights stay, else its shard of the new one.
  auto dit_of = [&](int r) {
    const auto& n = next_of(r);
    return n.dit ? n.dit->sharded(groups[static_cast<size_t>(r)]) : stream_->rank(r).model();
  };
  bool keep_caches = true;
  for (int r = 0; r < ranks; ++r)
    keep_caches = keep_caches && stream_->rank(r).can_continue_with(next_of(r).options);
  if (keep_caches) {
    stream_->each(
        [&](StreamGenerator& g, int r) { g.continue_with(dit_of(r), next_of(r).options); });
    change.stream_continued = change.caches_kept = true;
    return change;
  }
  std::vector<std::optional<StreamState>> states(static_cast<size_t>(ranks));
  std::vector<std::shared_ptr<const CausalWanModel>> dits;
  for (int r = 0; r < ranks; ++r) {
    if (stream_->rank(r).started())
      states[static_cast<size_t>(r)] = stream_->rank(r).release_state();
    dits.push_back(dit_of(r));
  }
  stream_.reset();  // the old caches go before the new ones are allocated
  std::vector<std::unique_ptr<StreamGenerator>> generators;
  for (int r = 0; r < ranks; ++r)
    generators.push_back(std::make_unique<StreamGenerator>(std::move(dits[static_cast<size_t>(r)]),
                                                           next_of(r).options));
  stream_ = std::make_unique<ParallelStream>(std::move(generators));
  // The re-cache of the resumed stream runs collectives: every rank at once, with its style
  // LoRAs set first (as change_preset does on one rank).
  const std::vector<ActiveStyleLora> loras = lead().loras;
  stream_->each([&](StreamGenerator& g, int r) {
    g.set_style_loras(loras);
    if (auto& state = states[static_cast<size_t>(r)]) g.resume(std::move(*state));
  });
  change.generator_rebuilt = true;
  change.stream_continued = states.front().has_value();
  return change;
}

}  // namespace longlive
