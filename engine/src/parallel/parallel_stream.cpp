// ParallelStream (longlive/generator.h): one stream's ranks, one thread each per call.
#include <fmt/format.h>

#include <exception>
#include <thread>

#include "longlive/error.h"
#include "longlive/generator.h"
#include "model/causal_wan.h"
#include "parallel/rank_group.h"

namespace longlive {

std::unique_ptr<ParallelStream> ParallelStream::create(
    const std::vector<const StreamGenerator*>& bases, RankBackend backend) {
  if (bases.empty()) throw ConfigError("a parallel stream needs at least one rank");
  for (size_t r = 1; r < bases.size(); ++r)
    if (bases[r]->model()->config().dim != bases[0]->model()->config().dim ||
        bases[r]->options().frames_per_block != bases[0]->options().frames_per_block)
      throw ConfigError(fmt::format("rank {}'s model or options differ from rank 0's", r));
  auto groups = RankGroup::create_local(static_cast<int>(bases.size()), backend);
  std::vector<std::unique_ptr<StreamGenerator>> generators;
  for (size_t r = 0; r < bases.size(); ++r)
    generators.push_back(std::make_unique<StreamGenerator>(bases[r]->model()->sharded(groups[r]),
                                                           bases[r]->options()));
  return std::make_unique<ParallelStream>(std::move(generators));
}

ParallelStream::ParallelStream(std::vector<std::unique_ptr<StreamGenerator>> generators)
    : generators_(std::move(generators)) {
  if (generators_.empty()) throw ConfigError("a parallel stream needs at least one rank");
  for (size_t r = 0; r < generators_.size(); ++r) {
    const RankGroup* group = generators_[r]->model()->ranks();
    if (group == nullptr || group->rank() != static_cast<int>(r) ||
        group->size() != static_cast<int>(generators_.size()))
      throw Error(
          fmt::format("ParallelStream: generator {} of {} does not run rank {} of a group "
                      "of {} (CausalWanModel::sharded)",
                      r, generators_.size(), r, generators_.size()));
  }
}

ParallelStream::~ParallelStream() = default;

void ParallelStream::each(const std::function<void(StreamGenerator&, int rank)>& call) {
  std::vector<std::exception_ptr> failures(generators_.size());
  std::vector<std::thread> threads;
  threads.reserve(generators_.size());
  for (size_t r = 0; r < generators_.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        call(*generators_[r], static_cast<int>(r));
      } catch (...) {
        failures[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
}

at::Tensor ParallelStream::next_block() {
  at::Tensor first;
  each([&](StreamGenerator& g, int r) {
    at::Tensor block = g.next_block();
    if (r == 0) first = std::move(block);
  });
  return first;
}

int64_t ParallelStream::bytes_received() const {
  return generators_.front()->model()->ranks()->bytes_received();
}

}  // namespace longlive
