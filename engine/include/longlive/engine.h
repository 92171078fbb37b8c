#pragma once
// Engine: the live generation session behind the studio. Owns a worker thread with the
// StreamGenerator, text encoder (+ prompt cache), decoder; commands are queued and applied at
// block edges; results leave through callbacks (called on the worker thread). Nothing here
// blocks the caller on the GPU, and errors never escape the worker: they go to on_error.
#include <ATen/core/Tensor.h>
#include <atomic>

#include <chrono>
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

#include "longlive/decoder.h"
#include "longlive/kernel_profiler.h"
#include "longlive/performance.h"
#include "longlive/preset.h"
#include "longlive/profiler.h"
#include "longlive/timeline.h"

namespace longlive {

class InputOpening;   // a picked input being opened beside the video (engine/src)
class OfferedInputs;  // the inputs' opener, handing those openings out

struct EngineFrame {
  // [H, W, 4] uint8 on the CPU: there unless host frames are off (Engine::set_host_frames), when
  // only `device` carries the frame (no device -> host copy at all).
  at::Tensor rgba;
  int64_t index = 0;
  std::string prompt;
  bool first_of_prompt = false;  // first frame generated after a prompt switch
  // The same frame on the GPU, with EngineOptions::device_frames on a CUDA engine (else empty):
  // a display can copy it on the device instead of uploading `rgba`.
  DeviceFrame device;
};

struct EngineOptions {
  // Hand out each frame's device copy too (EngineFrame::device). It keeps its block's device
  // memory (~H*W*4 bytes per frame) for as long as the consumer holds the frame.
  bool device_frames = false;
  // Without CUDA: run generation at nice 19, so that an interactive process's own threads (UI,
  // X server, software GL) come first. Off for batch use, which wants the cores.
  bool yield_cpu = false;
  // With CUDA graphs on, time regions on one block in this many (a profiled block runs eagerly,
  // the others replay their graphs). Without graphs every block is profiled (it costs nothing).
  int profile_every = 30;
  // Copy every frame to the host as well (recording, export, a display without interop). Only
  // a CUDA engine with device_frames can go without; change it live with set_host_frames().
  bool host_frames = true;
  // On a GPU, list the kernels of one block in this many with CUPTI (0: never). The sampled
  // block is not a region-profiled one, so its graphs replay as usual.
  int kernel_sample_every = 30;
  // Whether kernels are sampled from the start; Engine::set_kernel_sampling() changes it live.
  // CUPTI attaches at the first sample and stays (attached, it keeps memory for every kernel
  // run, sampled or not): a display samples only while its kernels view is shown, so a session
  // that never shows it never attaches CUPTI.
  bool kernel_sampling = true;
  // Give a block up mid-way (between denoising steps) when a prompt switch, transition, preset
  // change, pause, stop or restart arrives, and apply the command to that block instead of the
  // next: the switch shows about half a block sooner on average, and the video is the one it
  // would have been had the command come before the block (StreamGenerator::next_block_unless).
  bool abandon_blocks = true;
  // Open a video or camera picked with set_vace / set_v2v on a thread of its own while the
  // video goes on, and apply the pick once it is open (a V4L2 camera takes a few hundred ms to
  // open and start, which on the engine thread stopped the video for as long). Off: opened
  // when the command applies, on the engine thread.
  bool open_inputs_ahead = true;
  // Ready the inputs' encoding when a session opens, so that the first camera or video picked
  // starts as fast as the later ones (Performance::set_warm_inputs; unset: on a GPU, with VACE
  // weights and a memory_pool preset). It costs the start a few encodes of a black video.
  std::optional<bool> warm_inputs;
  // Bytes of latents kept for the export (Engine::kept_latents, on the CPU). Beyond it the oldest
  // blocks are dropped and counted, so a long video's memory stays bounded: 512 MiB is ~430
  // blocks (~5 min of video) at 480x832, 1.2 MiB per block. 0 keeps none (no re-decode export).
  int64_t max_kept_latent_bytes = int64_t{512} << 20;
  // Opens the VACE / video-to-video inputs' files and cameras (recorder's ffmpeg_input_opener();
  // empty: only captured camera frames can be read). Camera frames are saved under capture_dir
  // (empty: <temp>/longlive-captures) so a timeline replays them.
  InputOpener inputs;
  std::filesystem::path capture_dir;
  // The stream on several ranks (sequence parallelism, docs/multi-gpu.md; Performance::
  // set_ranks): one rank (the default) is the one-GPU path. On several ranks blocks are not
  // given up mid-way and regions are not profiled.
  RankPlan ranks;
};

// The latents an engine keeps of its current video, for an export that re-decodes them: the most
// recent blocks within EngineOptions::max_kept_latent_bytes.
struct KeptLatents {
  std::vector<at::Tensor> blocks;     // [1, F, 16, h, w] on the CPU, oldest first
  int64_t dropped_blocks = 0;         // the video's first blocks, no longer kept
  int64_t dropped_latent_frames = 0;  // their latent frames
  int64_t bytes = 0;                  // of `blocks`
};

// Where one block's time went: a named region and its device time (CUDA events on a GPU, host
// time on the CPU), summed over the block.
struct RegionTime {
  std::string name;
  double ms = 0;
};

struct EngineStats {
  std::string state = "idle";  // idle, loading, running, paused, error
  int64_t blocks = 0;          // of the current video (a preset change restarts it)
  int64_t frames = 0;          // of the current video
  double last_block_ms = 0;
  double fps = 0;  // video frames per second of generation
  // The last 200 blocks with prompt switches, transitions and preset changes marked. Like
  // last_switch_ms it spans preset changes; a new start() clears both.
  LatencyHistory history;
  double last_switch_ms = 0;  // command received -> first frame of the new prompt ready
  // A VACE or video-to-video input picked while the video runs (its command received: the
  // file or camera opened, the block in flight given up) -> the first frame of the first block
  // conditioned by it ready (encoded, generated, decoded). 0: none picked mid-stream in this
  // video.
  double last_input_ms = 0;
  // Of that: the pick -> the input in place (the file or camera opened, beside the video with
  // EngineOptions::open_inputs_ahead; the encoder made, its capture file created).
  double last_input_open_ms = 0;
  // Blocks given up mid-way for such a command (EngineOptions::abandon_blocks), this video.
  int64_t abandoned_blocks = 0;
  int64_t prompt_cache_hits = 0, prompt_cache_misses = 0;
  // The last block's regions (DiT kernels by kind, re-cache, decode on its own stream), largest
  // first, and the share of the block no region covers (launch gaps, host waits).
  std::vector<RegionTime> regions;
  double uncovered_fraction = 0;
  int64_t regions_block = -1;  // the block `regions` were timed on (with graphs, 1 in N)
  bool cuda_graphs = false;    // the DiT forwards replay CUDA graphs
  int64_t graph_replays = 0;   // in the current session
  // The DiT forwards captured into graphs and run eagerly (first sight of a step) so far.
  int64_t graph_captures = 0, graph_eager_forwards = 0;
  // Device -> host bytes per delivered frame of the last block (0: frames stayed on the GPU).
  double d2h_bytes_per_frame = 0;
  // Frames of the current video copied device -> host (host frames on, a CUDA engine); a CPU
  // engine's frames are made on the host and never count.
  int64_t host_copied_frames = 0;
  // Engine-thread time of the last block spent handing its frames to on_frame (the consumers'
  // own work: recording, display queueing), all its parts.
  double deliver_ms = 0;
  // The engine thread's time since the engine was made, summed over every block of every video:
  // handing frames to on_frame, waiting for the decoder's frames (their copy to the host
  // included) and waiting for the DiT's last kernel. Differences between two reads tell where a
  // slower stretch (a recording, say) loses its time.
  struct ThreadTime {
    int64_t blocks = 0;
    double deliver_ms = 0, decode_wait_ms = 0, dit_wait_ms = 0, block_ms = 0;
    // Feeding the VACE / video-to-video inputs (Performance::last_inputs_ms), given-up blocks too.
    double inputs_ms = 0;
  } thread_time;
  // Engine-thread time of the last preset change itself (frames flushed, the session moved to
  // the preset: SessionFactory::change_preset); its first block's time is in `history`.
  double last_preset_change_ms = 0;
  // Latents kept for the export, and the first blocks of the video dropped by the byte cap.
  int64_t kept_latent_bytes = 0;
  int64_t dropped_latent_blocks = 0;
  // The kernels of the last block the kernel profiler sampled (CUPTI: by region, largest first)
  // and that block's index (-1: none sampled yet).
  std::vector<KernelRow> kernels;
  int64_t kernels_block = -1;
  std::string preset;
  std::string device;
  int ranks = 1;           // the stream's ranks (EngineOptions::ranks): several GPUs, or CPU ranks
  std::string capability;  // "sm_90 NVIDIA H200", "CPU"
  // What the preset asked for that this device cannot run, and what runs instead (one line each;
  // the status bar and the overlay show them).
  std::vector<std::string> fallbacks;
  // The style-LoRA faders loaded, in load order.
  struct Fader {
    std::string name;
    double strength = 0;
    double baked = 0;  // strength merged into the weights by bakes (the studio: "baked at 0.80")
  };
  std::vector<Fader> loras;
  // The last bake's device time (merge of every adapted matrix, synchronised) and matrices
  // changed; 0 before any bake.
  double lora_bake_ms = 0;
  int64_t lora_bake_matrices = 0;
  // The VACE / video-to-video inputs: what they read, scale and strength, frame counts, preview.
  InputStatus inputs;
};

class Engine {
 public:
  struct Callbacks {
    std::function<void(EngineFrame)> on_frame;
    std::function<void(const EngineStats&)> on_stats;
    std::function<void(const std::string&)> on_error;
    // Optional: every block's latents [1, F, C, h, w] on the device, with its index in the
    // session (tests compare replays; nothing is copied unless the callback does).
    std::function<void(int64_t block, const at::Tensor& latents)> on_latents;
    // The finished timeline when a session stops (stop(), or an error ends it).
    std::function<void(const Timeline&)> on_timeline;
  };

  Engine(ModelSpec model, Preset preset, Callbacks callbacks, int height = 0, int width = 0,
         EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start(const std::string& prompt, uint64_t seed);  // (re)starts a video
  void start(const PromptMix& mix, uint64_t seed);
  void switch_prompt(const std::string& prompt);  // hard cut at the next block
  void cut(const PromptMix& mix);                 // hard cut to a blend
  // Crossfade to the mix over options.blocks blocks from the next block (0 = hard cut).
  void transition(const PromptMix& mix, const TransitionOptions& options);
  void prefetch_prompt(const std::string& prompt);  // encode ahead (typing)
  // Host copies of the frames on or off from the next block (see EngineOptions::host_frames):
  // a recorder turns them on while it records. Ignored (always on) without device frames.
  void set_host_frames(bool on) { host_frames_.store(on); }
  // Kernel sampling on or off from the next block (EngineOptions::kernel_sampling). The first
  // time on attaches CUPTI (its first enable takes a moment on the engine thread).
  void set_kernel_sampling(bool on) { kernel_sampling_.store(on); }
  void set_preset(const Preset& preset);  // applied at the next block
  // Style LoRAs (longlive/style_lora.h): loads a file as a fader at strength 0, named `name` or
  // after the file. A bad file, an unknown name or a strength outside 0..kMaxLoraStrength goes to
  // on_error and the video goes on. A fader move applies from the next block and is recorded.
  void load_lora(const std::filesystem::path& file, const std::string& name = {});
  void set_lora_strength(const std::string& name, double strength);
  // Bakes the faders that are up into the DiT's weights at the next block edge
  // (Performance::bake_loras), recorded; with no fader up, on_error says so and nothing changes.
  void bake_loras();
  // Unloads every style LoRA at the next block edge (Performance::unload_loras: the side path
  // goes, bakes stay), recorded; with none loaded, on_error says so and nothing changes.
  void unload_loras();
  // VACE and video-to-video inputs (docs/vace.md), from the next block, recorded; picking or
  // removing one gives the block in flight up (EngineOptions::abandon_blocks) so that it is the
  // first block made with the change. An input that cannot be opened (no VACE weights,
  // unreadable file, camera that does not open) or whose source fails later goes to on_error
  // and the video goes on without it. Scale and strength move live (the next block).
  void set_vace(const VaceRequest& request);
  void clear_vace();
  void set_vace_scale(double scale);
  void set_v2v(const V2vRequest& request);
  void clear_v2v();
  void set_v2v_strength(double strength);
  // Plays a recorded timeline: stops the current video, then applies the timeline's events at
  // their blocks (recording them anew), at the timeline's own resolution and first preset (the
  // engine keeps them afterwards). Start or stop cancels the playback.
  void play(const Timeline& timeline, PresetLookup presets);
  void pause();
  void resume();
  void stop();
  EngineStats stats() const;
  // The timeline of the running session (or the last one), as recorded so far.
  Timeline timeline() const;
  // Latents of the current video, [1, T, 16, h, w] on the CPU (one copy per block), so an export
  // can re-decode the session with the Wan VAE after previewing with TAEHV: the most recent blocks
  // within EngineOptions::max_kept_latent_bytes (kept_latents() says how many were dropped).
  // Undefined before the first block and when none are kept; cleared by start().
  at::Tensor session_latents() const;
  // The same as one [1, F, 16, h, w] CPU tensor per block, without the copy, and what the cap
  // dropped: cheap enough for a UI thread (the blocks are never written again).
  KeptLatents kept_latents() const;

 private:
  struct Command;
  void run();
  void post(Command command);
  // The commands to apply now, in order: those before the first input still opening, and after
  // it those that do not depend on inputs (Command::passes_openings), passing input commands, up
  // to the first command of another kind. One rule for what wakes the engine thread, what it
  // takes and what gives a block up, so the three cannot disagree.
  std::vector<size_t> applicable_locked() const;  // their indices in commands_
  std::deque<Command> take_applicable_locked();
  bool has_applicable_locked() const;  // whether that takes any
  // Sets block_outdated_ when the commands the next batch takes change the next block.
  void mark_outdated_locked();
  // A video or camera opened beside the video (EngineOptions::open_inputs_ahead); null: opened
  // when its command applies. `camera_asked`: the camera this kind of input last asked for
  // (set to `source`'s), `other_asked` the other kind's.
  std::shared_ptr<InputOpening> open_ahead(const InputSource& source,
                                           std::optional<InputSource>& camera_asked,
                                           const std::optional<InputSource>& other_asked);
  // Waits for the oldest block in the decoder's queue and hands its frames to on_frame.
  void deliver_oldest_block();
  // Hands the oldest block's next decoded part to on_frame (AsyncDecoder::take_part), waiting for
  // it when `wait`; false when it was not decoded yet (or nothing is queued).
  bool deliver_next_part(bool wait);
  void flush_frames();  // every queued block, before anything resets or drops the session

  ModelSpec model_;
  Callbacks callbacks_;
  int height_, width_;
  EngineOptions options_;
  std::unique_ptr<OfferedInputs> inputs_;  // options_.inputs, with the openings offered
  // The camera of the last set_vace / set_v2v (guarded by mutex_), forgotten when its pick
  // fails or no input of the kind runs: a camera asked again while it runs is not opened ahead
  // (LiveInputs shares the running capture); else it is (a second open of a running camera only
  // fails or is closed unused).
  std::optional<InputSource> vace_camera_asked_, v2v_camera_asked_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Command> commands_;
  EngineStats stats_;
  bool quit_ = false;
  std::atomic<bool> host_frames_{true};
  std::atomic<bool> kernel_sampling_{true};
  // A command that changes what the next block is (a switch, preset, pause, stop, restart) is
  // waiting: the block in progress is given up (EngineOptions::abandon_blocks).
  std::atomic<bool> block_outdated_{false};
  KeptLatents latents_;  // per block, CPU; guarded by mutex_
  // What the frames of each block in the decoder's queue belong to (worker thread only).
  struct QueuedBlock {
    int64_t index = 0;  // the block of the video
    std::string prompt;
    bool first_of_prompt = false;
    std::optional<std::chrono::steady_clock::time_point> switch_issued;
    std::optional<std::chrono::steady_clock::time_point> input_issued;  // see last_input_ms
    // Its parts handed out so far (the stats are set once it is whole).
    int64_t frames_delivered = 0;
    double deliver_ms = 0;
  };
  std::deque<QueuedBlock> queued_;
  int64_t frame_index_ = 0;                   // worker thread only
  std::unique_ptr<Performance> performance_;  // worker thread only
  std::thread worker_;
};

// ---- Process-wide host memory settings
// Process-wide host allocator settings for long sessions.
// LibTorch's CPU tensors come from malloc. glibc raises its mmap threshold each time a large
// block is freed, so after a few blocks every tensor buffer lands on the heap instead, and the
// heap's fragmentation grows RSS block after block (the soak measured ~1 MiB per block on the
// tiny CPU model; docs/reliability.md). A fixed threshold keeps large buffers in their own
// mappings, returned to the system when freed. It also gives LibTorch a CPU allocator that takes
// buffers from plain malloc instead of posix_memalign, whose freed small buffers glibc before 2.38
// never reuses for the same size (the soak's remaining ~4 KiB per block). Call once at the start
// of main() (buffers made before keep their allocator); the threshold is glibc's only.
void keep_large_host_buffers_out_of_the_heap();

}  // namespace longlive
