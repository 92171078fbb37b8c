#pragma once
// MP4 recorder: RGBA8 frames in, H.264 in an MP4 out, encoded on the recorder's own thread.
//
// push() blocks while the queue is full (back-pressure on the generator), so no frame is ever
// dropped. While recording, the file is a fragmented MP4 (one fragment per keyframe interval,
// flushed to disk as it is written), so a crash or kill leaves a playable file up to the last
// fragment. A clean finish() remuxes it into a regular MP4 with the index up front (faststart)
// and the prompts as chapters. Prompts, seed, preset and model also go to a sidecar
// `<path>.json`, rewritten at every prompt change so it survives a crash too.
// Writer errors (disk full, unwritable path) never crash: error() reports them, push()/finish()
// throw IoError naming the path, and the caller still holds its frames/latents to export
// elsewhere. See docs/recording.md.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace longlive {

// Where a recording stands; passed to RecorderOptions::on_progress.
struct RecorderProgress {
  int64_t frames_written = 0;  // frames encoded and handed to the muxer
  int64_t frames_queued = 0;   // frames waiting in the queue
  int64_t bytes_written = 0;   // size of the file so far
  // Whether the encoder keeps up: its time per frame (conversion, encoding, muxing) on its
  // thread, and how long push() waited for room in a full queue (the producer's stall).
  double encode_ms_mean = 0, encode_ms_max = 0;
  double push_wait_ms_total = 0, push_wait_ms_max = 0;
};

// Where RGBA8 → YUV 4:2:0 (BT.709, limited range) happens.
enum class ColorConversion {
  automatic,  // tensor ops on the GPU for CUDA frames (1.5 B/pixel cross the bus, not 4), else
              // swscale on the recorder thread
  swscale,    // always on the host (CUDA frames are copied first)
  tensor,     // always with ATen ops on the frame's device, in push()
};

struct RecorderOptions {
  std::filesystem::path path;
  int width = 0;   // must be even (4:2:0 chroma)
  int height = 0;  // must be even
  int fps = 16;
  int crf = 18;  // libx264 CRF (lower = better, 18 ~ visually lossless); NVENC's cq
  // auto (h264_nvenc when it opens, else libx264), libx264, h264_nvenc, libx265, hevc_nvenc.
  std::string codec = "auto";
  int queue_frames = 48;  // frames buffered before push() blocks
  // Encoder threads; 0 = FFmpeg's choice (about one per core). A live recording takes
  // live_encoder_threads().
  int encoder_threads = 0;
  // libx264/libx265: each frame a packet at once (zerolatency, threads as slices) instead of
  // frame-parallel threads (a packet `encoder_threads` frames later, which a file does not mind,
  // and more frames per second: see live_encoder_threads()).
  bool zero_latency = false;
  int gop_frames = 16;  // keyframe interval = fragment length (1 s at 16 fps)
  // On a clean finish(), remux into a non-fragmented MP4 with the index up front and the prompts
  // as chapters. Off: the file stays fragmented (still playable everywhere FFmpeg plays).
  bool faststart = true;
  bool write_sidecar = true;  // `<path>.json` with model, preset, seed and prompts
  ColorConversion conversion = ColorConversion::automatic;
  // Session facts written to the file's metadata and the sidecar.
  std::string model;
  std::string preset;
  std::optional<uint64_t> seed;
  std::map<std::string, std::string> metadata;  // extra container tags (title, comment, ...)
  // Called on the recorder thread after each encoded frame: keep it short (post to your own
  // thread). Not called after an error.
  std::function<void(const RecorderProgress&)> on_progress;
};

// Encoder threads for a recording made while the video is generated: half the cores, 1 to 8. It
// must keep up with the generation, or push() blocks the engine thread (no frame is dropped):
// balanced generates ~45 fps on an H100/H200, and in a studio recording on an H200 (4 threads,
// zerolatency) generation fell to 28 fps although the same encoder alone does 90 fps on that
// kind of box: the encoder shares the cores with the view, the engine and the X server, so it
// gets headroom (8 threads, frame-parallel: ~210 fps of 832x480 noise, the worst case, alone).
// GPUs with NVENC (desktop RTX cards) encode there instead.
int live_encoder_threads(unsigned cores);
int live_encoder_threads();  // for this machine's cores

// A prompt that starts at a frame of the recording (chapters, sidecar).
struct PromptMark {
  int64_t frame = 0;
  std::string text;
};

class Recorder {
 public:
  // Opens the output and starts the encoder thread. IoError naming the path when the file
  // cannot be created, ConfigError for a bad size or an unavailable codec.
  explicit Recorder(RecorderOptions options);
  ~Recorder();  // finishes the file if finish()/cancel() was not called (errors are logged)
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // One frame [height, width, 4] uint8 (any device; copied), the next in order. Blocks while the
  // queue is full. Throws IoError once the writer has failed.
  void push(const at::Tensor& rgba);
  // One frame from raw RGBA8 rows `stride` bytes apart. frame_index orders the frames and sets
  // their timestamps (frame_index / fps from the first frame); it must increase. A gap is
  // recorded as a longer frame and logged.
  void push(const uint8_t* rgba, int stride, int64_t frame_index);
  // The prompt in effect from frame_index on (the first mark should be at the first frame).
  void mark_prompt(std::string text, int64_t frame_index);

  // Encodes what is queued, writes the trailer, finalises (faststart) and closes the file.
  // Throws IoError on failure; the fragmented file stays on disk if only finalising failed.
  void finish();
  // Stops at once: queued frames are discarded and the file is closed as it stands (fragmented,
  // playable up to the last frame encoded). Never throws.
  void cancel();

  RecorderProgress progress() const;
  int64_t frames_written() const;
  int64_t bytes_written() const;
  std::string codec_name() const;
  const std::filesystem::path& path() const;
  std::filesystem::path sidecar_path() const;
  // The first write error, if any (also thrown by push()/finish()). Poll it from the producer.
  std::optional<std::string> error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Frames to MP4 in one call (CLI export, GUI export dialog). `frames`: [N, 3, H, W] float in
// [0, 1], or [N, H, W, 4] / [N, H, W, 3] uint8. width/height in `options` are taken from the
// frames. `progress(done, total)` is called after each frame pushed; returning false cancels,
// removes the partial file and returns false. Returns true when the file is complete.
bool record_frames_to_mp4(const at::Tensor& frames, RecorderOptions options,
                          const std::vector<PromptMark>& prompts = {},
                          const std::function<bool(int64_t, int64_t)>& progress = {});

// [H, W, 4] uint8 RGBA (even H and W, any device) -> flat uint8 I420 on the same device: the Y
// plane (H x W), then U and V (H/2 x W/2 each, 2x2 averages). BT.709, limited range, the
// matrix the MP4 is tagged with.
at::Tensor rgba_to_i420(const at::Tensor& rgba);

// Frames as [N, H, W, 4] uint8 RGBA on the CPU, from any layout record_frames_to_mp4 accepts.
at::Tensor frames_to_rgba8(const at::Tensor& frames);

struct VideoChapter {
  double start_s = 0;
  double end_s = 0;
  std::string title;
};

struct DecodedVideo {
  int64_t frames = 0;
  std::vector<double> timestamps_s;  // presentation time of each decoded frame
  std::vector<at::Tensor> rgb;       // [H, W, 3] uint8 per frame (when requested)
  int width = 0, height = 0;
  std::string codec;
  std::map<std::string, std::string> metadata;  // container tags
  std::vector<VideoChapter> chapters;
  bool fragmented = false;  // the file has movie fragments (moof)
};

// Reads a video file back with libavformat/libavcodec (tests, export checks, `longlive probe`).
DecodedVideo read_video(const std::filesystem::path& path, bool keep_pixels);

}  // namespace longlive
