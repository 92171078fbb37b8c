#pragma once
// Engine: the live generation session behind the studio. Owns a worker thread with the
// StreamGenerator, text encoder (+ prompt cache), decoder; commands are queued and applied at
// block edges; results leave through callbacks (called on the worker thread). Nothing here
// blocks the caller on the GPU, and errors never escape the worker: they go to on_error.
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "longlive/preset.h"

namespace longlive {

struct ModelSpec {
  bool tiny_random = false;      // CPU-sized random model for trying the app without weights
  std::filesystem::path folder;  // real checkpoints (see missing_model_files)
};

// Files a model folder must hold (searched recursively); returns the ones not found.
std::vector<std::string> missing_model_files(const std::filesystem::path& folder);

struct EngineFrame {
  at::Tensor rgba;  // [H, W, 4] uint8, CPU
  int64_t index = 0;
  std::string prompt;
  bool first_of_prompt = false;  // first frame generated after a prompt switch
};

// Where one block's time went: a named region and its device time (CUDA events on a GPU, host
// time on the CPU), summed over the block.
struct RegionTime {
  std::string name;
  double ms = 0;
};

struct EngineStats {
  std::string state = "idle";  // idle, loading, running, paused, error
  int64_t blocks = 0;
  int64_t frames = 0;
  double last_block_ms = 0;
  double fps = 0;                      // video frames per second of generation
  std::vector<double> block_ms;        // last 200 blocks
  std::vector<bool> block_was_switch;  // same length: a prompt switch happened at that block
  double last_switch_ms = 0;           // command received -> first frame of the new prompt ready
  int64_t prompt_cache_hits = 0, prompt_cache_misses = 0;
  // The last block's regions (DiT kernels by kind, re-cache, decode on its own stream), largest
  // first, and the share of the block no region covers (launch gaps, host waits).
  std::vector<RegionTime> regions;
  double uncovered_fraction = 0;
  std::string preset;
  std::string device;
};

class Engine {
 public:
  struct Callbacks {
    std::function<void(EngineFrame)> on_frame;
    std::function<void(const EngineStats&)> on_stats;
    std::function<void(const std::string&)> on_error;
  };

  Engine(ModelSpec model, Preset preset, Callbacks callbacks, int height = 0, int width = 0);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start(const std::string& prompt, uint64_t seed);  // (re)starts a video
  void switch_prompt(const std::string& prompt);         // hard cut at the next block
  void prefetch_prompt(const std::string& prompt);       // encode ahead (typing)
  void set_preset(const Preset& preset);                 // applied at the next block
  void pause();
  void resume();
  void stop();
  EngineStats stats() const;
  // Latents of the current video so far, [1, T, 16, h, w] on the CPU (one copy per block), so an
  // export can re-decode the session with the Wan VAE after previewing with TAEHV. Undefined
  // before the first block; cleared by start() and by a preset change that restarts the video.
  at::Tensor session_latents() const;

  struct Session;  // model + preset state of the worker (engine.cpp)

 private:
  struct Command;
  void run();
  void post(Command command);
  // Waits for the oldest block in the decoder's queue and hands its frames to on_frame.
  void deliver_oldest_block();

  ModelSpec model_;
  Callbacks callbacks_;
  int height_, width_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Command> commands_;
  EngineStats stats_;
  std::vector<at::Tensor> latents_;  // per block, CPU; guarded by mutex_
  bool quit_ = false;
  Preset preset_;
  std::unique_ptr<Session> session_;
  std::thread worker_;
};

}  // namespace longlive
