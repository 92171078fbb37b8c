#include "longlive/ranked_session.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/profiler.h"

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

}  // namespace longlive
