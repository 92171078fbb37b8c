#pragma once
// One stream on several ranks, opened the way a front end opens a session (docs/multi-gpu.md):
// a session per device from the session factory, and a ParallelStream whose rank r runs a sharded
// copy of device r's DiT. `generate --gpus` and `bench --gpus` open their streams here.
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <vector>

#include "longlive/generator.h"
#include "longlive/session.h"

namespace longlive {

struct RankPlan {
  int ranks = 1;
  // Every rank on the model's device (several ranks on one GPU or the CPU share its weights):
  // tests the ranks where one GPU is lent. Without it rank r runs on CUDA device r.
  bool share_device = false;
  // Default: NCCL across CUDA devices when this build has it, else Gloo (through the host for
  // CUDA tensors).
  std::optional<RankBackend> backend;
  bool operator==(const RankPlan&) const = default;
};

class RankedSession {
 public:
  // Opens `plan.ranks` ranks of `preset` at height x width. Rank 0's session keeps what the
  // front end asked for in `overrides` (text encoder, live decoder); the other ranks open only
  // their DiT. ConfigError for fewer than one rank, more ranks than CUDA devices (without
  // share_device), or a backend this build lacks.
  static std::unique_ptr<RankedSession> open(const ModelSpec& model,
                                             const SessionOverrides& overrides,
                                             const Preset& preset, int height, int width,
                                             const RankPlan& plan);
  ~RankedSession();
  RankedSession(const RankedSession&) = delete;
  RankedSession& operator=(const RankedSession&) = delete;

  // Rank 0's session: its text encoder, prompt cache and live decoder serve the whole stream.
  // Its own generator is released (the stream's rank 0 runs its DiT); use stream().
  Session& lead() { return *sessions_.front(); }
  // Rank 0's factory (VACE encoders, export decoders).
  SessionFactory& lead_factory() { return *factories_.front(); }
  ParallelStream& stream() { return *stream_; }
  int ranks() const { return stream_->ranks(); }
  RankBackend backend() const { return backend_; }
  // The distinct devices the ranks run on, rank order.
  const std::vector<at::Device>& devices() const { return devices_; }
  // Waits for every device's queued work (timing across ranks).
  void synchronize() const;

  // Moves the stream to `preset` as SessionFactory::change_preset moves one session: nothing
  // happens when the stream runs the same; with the same weights, precision and cache geometry
  // every rank goes on with its caches (StreamGenerator::continue_with on its shard of the new
  // DiT); otherwise every rank hands its stream over to a new generator, which re-caches the
  // window (release_state / resume). The ranks keep their group (no new communicators); rank
  // 0's session moves its text encoder and live decoder. The video is the one a single rank
  // makes with the same change.
  PresetChange change_preset(const Preset& preset);

 private:
  RankedSession() = default;
  // Declared first so they outlive the sessions and the stream built on them.
  std::vector<std::unique_ptr<SessionFactory>> factories_;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::unique_ptr<ParallelStream> stream_;
  std::vector<at::Device> devices_;
  RankBackend backend_ = RankBackend::gloo;
  bool one_device_ = false;  // every rank on one device: one session serves them all
};

}  // namespace longlive
