#pragma once
// --gpus / --rank-backend / --share-gpu for `generate`, `bench` and `render`: one stream on several
// ranks
// (sequence parallelism, docs/multi-gpu.md), opened by RankedSession.
#include <CLI/CLI.hpp>

#include <string>

#include "longlive/ranked_session.h"

namespace longlive::cli {

struct RankArgs {
  int gpus = 1;
  std::string backend = "auto";
  bool share_gpu = false;  // every rank on the first GPU (tests the ranks on a one-GPU machine)
  RankPlan plan() const {
    RankPlan p;
    p.ranks = gpus;
    p.share_device = share_gpu;
    if (backend != "auto") p.backend = parse_rank_backend(backend);
    return p;
  }
};

inline void add_rank_options(CLI::App* cmd, RankArgs& a) {
  cmd->add_option("--gpus", a.gpus,
                  "Run the stream on N ranks, rank r on CUDA device r (sequence parallelism, "
                  "docs/multi-gpu.md); on the CPU or with --share-gpu all on one device")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--rank-backend", a.backend,
                  "auto (NCCL across GPUs when built, else Gloo), gloo or nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}));
  cmd->add_flag("--share-gpu", a.share_gpu,
                "Put every --gpus rank on the first GPU (Gloo; tests the ranks on one GPU)");
}

}  // namespace longlive::cli
