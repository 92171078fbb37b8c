#pragma once
// MP4 recorder: RGBA8 frames in, H.264 in a fragmented MP4 out, on its own thread.
//
// push() blocks while the queue is full (back-pressure on the generator), so no frame is ever
// dropped. The file is written as fragmented MP4 (one fragment per keyframe interval, flushed to
// disk as it is written), so a crash or kill leaves a playable file up to the last fragment.
// Writer errors (disk full, unwritable path) never crash: push()/finish() throw IoError naming
// the path, and the caller still holds its frames/latents to export elsewhere.
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace longlive {

struct RecorderOptions {
  std::filesystem::path path;
  int width = 0;   // must be even (yuv420p)
  int height = 0;  // must be even
  int fps = 16;
  int crf = 18;  // libx264 quality (lower = better); mapped to NVENC's cq
  std::string codec =
      "auto";             // auto (h264_nvenc when available, else libx264), libx264, h264_nvenc
  int queue_frames = 48;  // frames buffered before push() blocks
  int gop_frames = 16;    // keyframe interval = fragment length (1 s at 16 fps)
  std::map<std::string, std::string> metadata;  // container metadata (title, comment, ...)
};

class Recorder {
 public:
  // Opens the output and starts the encoder thread; IoError naming the path when it cannot.
  explicit Recorder(RecorderOptions options);
  ~Recorder();  // finishes the file if finish() was not called (errors are logged)
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // One frame [height, width, 4] uint8 (CPU). Blocks while the queue is full.
  void push(const at::Tensor& rgba);
  // Encodes what is queued, writes the trailer, closes the file. Throws IoError on failure.
  void finish();

  int64_t frames_written() const;
  int64_t bytes_written() const;
  std::string codec_name() const;
  // The first write error, if any (also thrown by push()/finish()).
  std::optional<std::string> error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DecodedVideo {
  int64_t frames = 0;
  std::vector<double> timestamps_s;  // presentation time of each decoded frame
  std::vector<at::Tensor> rgb;       // [H, W, 3] uint8 per frame (when requested)
  int width = 0, height = 0;
  std::string codec;
};

// Reads a video file back with libavformat/libavcodec (tests, export checks).
DecodedVideo read_video(const std::filesystem::path& path, bool keep_pixels);

}  // namespace longlive
