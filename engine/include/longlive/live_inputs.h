#pragma once
// The control inputs of a live Performance: a VACE input (control frames, reference image,
// inpainting mask) and a video-to-video input, each from a video file, a camera, an image or
// camera frames captured earlier (docs/vace.md). Sources are opened through an InputOpener
// (FFmpeg lives in recorder/: ffmpeg_input_opener()); camera frames are saved as they are used,
// so a timeline names the saved file and `render` replays the session exactly.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive {

class SessionFactory;
class StreamGenerator;
struct Session;

// Opens what an InputSource names, at the session's size (IoError / FormatError naming the file
// or device). `frames` serves video, camera and image sources; captured frames (InputKind::frames)
// need no opener.
struct InputOpener {
  std::function<std::shared_ptr<VaceFrameSource>(const InputSource& source, int height, int width)>
      frames;
  // [1, 3, H, W] in [-1, 1] (reference images)
  std::function<at::Tensor(const std::filesystem::path& path, int height, int width)> image;
  // [H, W] of 0/1, 1 = generate (inpainting masks)
  std::function<at::Tensor(const std::filesystem::path& path, int height, int width)> mask;
};

// What the inputs are doing, for the UI (EngineStats::inputs).
struct InputStatus {
  bool vace_available = false;  // the model has VACE weights
  std::string vace_status;      // SessionFactory::vace_status()
  std::string vace;             // "conditioning: video 'in.mp4'"; empty: no VACE input
  double vace_scale = 1.0;
  std::string v2v;  // "video 'in.mp4'"; empty: no video-to-video input
  double v2v_strength = 0.0;
  int64_t frames_used = 0;  // control frames handed to the encoders
  int64_t dropped = 0;      // camera frames dropped (generation behind)
  int64_t repeated = 0;     // camera frames repeated (input stalled)
  at::Tensor preview;       // [h, w, 3] uint8, the last control frame (preprocessed), small
};

// Built-in preprocessors of control frames [T, 3, H, W] in [-1, 1], on the frames' device:
// "gray" (BT.601 luma in all three channels), "edges" (Sobel gradient magnitude of the luma,
// a unit step -> 1, white edges on black), "" (unchanged). ConfigError for another name.
at::Tensor preprocess_frames(const at::Tensor& frames, const std::string& kind);

// Camera frames saved as they are used: a raw file, a 16-byte header ("LLRGB8\0\0", int32
// height, int32 width, little-endian) then [H, W, 3] uint8 frames. Raw so that a replay reads
// back the very values the live session encoded (a lossy codec would not).
class FrameCaptureWriter {
 public:
  FrameCaptureWriter(const std::filesystem::path& path, int height, int width);  // IoError
  ~FrameCaptureWriter();
  FrameCaptureWriter(const FrameCaptureWriter&) = delete;
  FrameCaptureWriter& operator=(const FrameCaptureWriter&) = delete;
  void append(const at::Tensor& frames);  // [T, 3, H, W] in [-1, 1]; IoError when a write fails
  const std::filesystem::path& path() const { return path_; }
  int64_t frames() const { return frames_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  int height_, width_;
  int64_t frames_ = 0;
};

// A capture file read back from frame `offset`; past its end the last frame is repeated.
class CapturedFrameSource final : public VaceFrameSource {
 public:
  // IoError naming the file when it cannot be read; FormatError for a bad header or a size other
  // than the session's.
  CapturedFrameSource(const std::filesystem::path& path, int height, int width, int64_t offset = 0);
  at::Tensor next_frames(int64_t count) override;
  int64_t frames() const;  // in the file now

 private:
  std::filesystem::path path_;
  int height_, width_;
  int64_t next_;
  at::Tensor last_;
};

// One picture as every frame.
class StillFrameSource final : public VaceFrameSource {
 public:
  explicit StillFrameSource(at::Tensor image) : image_(std::move(image)) {}  // [1, 3, H, W]
  at::Tensor next_frames(int64_t count) override {
    return image_.expand({count, -1, -1, -1}).contiguous();
  }

 private:
  at::Tensor image_;
};

// The VACE and video-to-video inputs of one Performance (not thread-safe, like it).
class LiveInputs {
 public:
  // capture_dir: where camera frames are saved (created when needed).
  LiveInputs(InputOpener opener, std::filesystem::path capture_dir);
  ~LiveInputs();

  // Opens the input (ConfigError / IoError / FormatError: nothing changes) and returns the
  // request as a timeline records it: a camera becomes its capture file. Replaces any VACE input.
  // Sources are opened at the session's size; preprocessing runs on its device.
  VaceRequest set_vace(const VaceRequest& request, SessionFactory& factory, const Session& session);
  void clear_vace(StreamGenerator* generator);
  void set_vace_scale(double scale);  // ConfigError outside 0..kMaxVaceScale
  V2vRequest set_v2v(const V2vRequest& request, SessionFactory& factory, const Session& session);
  void clear_v2v(StreamGenerator* generator);
  void set_v2v_strength(double strength);  // ConfigError outside (0, 1]

  bool has_vace() const;
  bool has_v2v() const;
  // The current inputs as requests that continue from where they are now (the offsets of the
  // frames used so far): what a new timeline states at its start.
  std::optional<VaceRequest> vace_now() const;
  std::optional<V2vRequest> v2v_now() const;

  void reset();  // a new video: the encoders' streaming caches are emptied

  // Before each block: hands the block's control input to the generator. An input whose source
  // failed (a file that cannot be read, a camera gone) is dropped and the generator runs on
  // without it: the kinds dropped (vace_off, v2v_off) are returned, with why in `messages`.
  std::vector<EventKind> before_block(StreamGenerator& generator,
                                      std::vector<std::string>& messages);

  InputStatus status(const SessionFactory* factory) const;

 private:
  struct Tap;
  struct Vace;
  struct V2v;
  std::shared_ptr<Tap> open_tap(const InputSource& source, const Session& session);

  InputOpener opener_;
  std::filesystem::path capture_dir_;
  std::unique_ptr<Vace> vace_;
  std::unique_ptr<V2v> v2v_;
};

}  // namespace longlive
