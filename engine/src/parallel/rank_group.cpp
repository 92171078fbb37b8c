#include "parallel/rank_group.h"

#include <fmt/format.h>

#include <exception>
#include <mutex>
#include <thread>

#include "longlive/error.h"

#if defined(USE_C10D_GLOO) || defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#endif
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace longlive {

RowShard RowShard::of(int64_t rows, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw Error(fmt::format("rank {} of {} is not a rank of the group", rank, ranks));
  const int64_t base = rows / ranks, extra = rows % ranks;
  RowShard s;
  s.count = base + (rank < extra ? 1 : 0);
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  return s;
}

RankBackend parse_rank_backend(const std::string& name) {
  if (name == "gloo") return RankBackend::gloo;
  if (name == "nccl") return RankBackend::nccl;
  throw ConfigError(fmt::format("rank backend '{}' is not one of: gloo, nccl", name));
}

std::string to_string(RankBackend backend) {
  return backend == RankBackend::gloo ? "gloo" : "nccl";
}

bool rank_backend_available(RankBackend backend) {
  switch (backend) {
    case RankBackend::gloo:
#ifdef USE_C10D_GLOO
      return true;
#else
      return false;
#endif
    case RankBackend::nccl:
#ifdef USE_C10D_NCCL
      return true;
#else
      return false;
#endif
  }
  return false;
}

#if defined(USE_C10D_GLOO) || defined(USE_C10D_NCCL)
namespace {

class C10dRankGroup final : public RankGroup {
 public:
  C10dRankGroup(c10::intrusive_ptr<c10d::Backend> backend, int rank, int size)
      : backend_(std::move(backend)), rank_(rank), size_(size) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int64_t bytes_received() const override { return bytes_received_; }

  at::Tensor all_gather_rows(const at::Tensor& local, int64_t dim, int64_t total) override {
    const RowShard mine = shard(total);
    if (local.size(dim) != mine.count)
      throw Error(fmt::format("rank {} of {} holds {} rows of {}, expected {}", rank_, size_,
                              local.size(dim), total, mine.count));
    if (size_ == 1) return local;
    // Collectives move equal shapes: every rank sends the largest share, padded with zeros.
    const int64_t widest = RowShard::of(total, 0, size_).count;
    at::Tensor padded = local.contiguous();
    if (mine.count < widest) {
      std::vector<int64_t> pad_shape = local.sizes().vec();
      pad_shape[static_cast<size_t>(dim)] = widest - mine.count;
      padded = at::cat({padded, at::zeros(pad_shape, local.options())}, dim);
    }
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (int r = 0; r < size_; ++r) gathered[0].push_back(at::empty_like(padded));
    std::vector<at::Tensor> input{padded};
    backend_->allgather(gathered, input)->wait();
    bytes_received_ += (size_ - 1) * padded.numel() * padded.element_size();
    std::vector<at::Tensor> parts;
    parts.reserve(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r)
      parts.push_back(
          gathered[0][static_cast<size_t>(r)].narrow(dim, 0, RowShard::of(total, r, size_).count));
    return at::cat(parts, dim);
  }

 private:
  c10::intrusive_ptr<c10d::Backend> backend_;
  int rank_, size_;
  int64_t bytes_received_ = 0;
};

// A rank that never arrives (its thread failed) ends the others' wait after this long; a block of
// the full model on the CPU stays well inside it.
constexpr std::chrono::milliseconds kCollectiveTimeout{10 * 60 * 1000};

#ifdef USE_C10D_NCCL
c10::intrusive_ptr<c10d::ProcessGroupNCCL::Options> nccl_options() {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = kCollectiveTimeout;
  return options;
}
#endif

c10::intrusive_ptr<c10d::Backend> make_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int ranks, RankBackend backend) {
#ifdef USE_C10D_GLOO
  if (backend == RankBackend::gloo) {
    auto options = c10d::ProcessGroupGloo::Options::create(kCollectiveTimeout);
    // In-process ranks talk over the loopback interface: no hostname lookup, no network.
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, ranks, options);
  }
#endif
#ifdef USE_C10D_NCCL
  if (backend == RankBackend::nccl)
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, ranks, nccl_options());
#endif
  throw ConfigError(fmt::format("this build has no {} rank backend", to_string(backend)));
}

}  // namespace
#endif

std::vector<std::shared_ptr<RankGroup>> RankGroup::create_local(int ranks, RankBackend backend) {
  if (ranks < 1)
    throw ConfigError(fmt::format("a rank group needs at least 1 rank, got {}", ranks));
  if (!rank_backend_available(backend))
    throw ConfigError(fmt::format(
        "this build has no {} rank backend (Gloo: install libgloo-dev and rebuild; NCCL: a CUDA "
        "build with NCCL's headers)",
        to_string(backend)));
#if defined(USE_C10D_GLOO) || defined(USE_C10D_NCCL)
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::shared_ptr<RankGroup>> groups(static_cast<size_t>(ranks));
  std::exception_ptr failure;
  std::mutex failure_mutex;
  // Each rank's constructor waits for the others (Gloo connects them in it): one thread each.
  std::vector<std::thread> joiners;
  for (int r = 0; r < ranks; ++r)
    joiners.emplace_back([&, r] {
      try {
        groups[static_cast<size_t>(r)] =
            std::make_shared<C10dRankGroup>(make_backend(store, r, ranks, backend), r, ranks);
      } catch (...) {
        const std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    });
  for (auto& t : joiners) t.join();
  if (failure) std::rethrow_exception(failure);
  return groups;
#else
  return {};
#endif
}

}  // namespace longlive
