#pragma once
// VACE control inputs read with FFmpeg's libavformat/libavcodec (no Qt): a video file as a frame
// source, images as reference pictures or inpainting masks. Every picture is scaled to cover the
// session's size and center-cropped (no padding, no distortion).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "longlive/vace.h"

namespace longlive {

// A video file resampled to `fps` by presentation time (a frame is repeated or dropped as the
// rate asks) and looped at its end. Decoded once at open, kept as uint8 at the session's size
// (12 frames at 480x832 are 14 MiB: a minute of control video at 16 fps takes 1.1 GiB).
// The longest control video VideoFileSource loads (10 minutes: 11 GiB at 480x832).
inline constexpr double kMaxControlVideoSeconds = 600;

class VideoFileSource final : public VaceFrameSource {
 public:
  // IoError naming the file when it cannot be opened; FormatError when it has no decodable
  // video stream or no frame, or when it runs past kMaxControlVideoSeconds.
  VideoFileSource(const std::filesystem::path& path, int height, int width, double fps = 16.0);
  at::Tensor next_frames(int64_t count) override;  // [count, 3, H, W] float32 in [-1, 1]

  void skip(int64_t count) { next_ += count; }        // start later (a replay's offset)
  int64_t frames() const { return frames_.size(0); }  // after resampling, one loop
  int64_t position() const { return next_; }          // frames handed out so far
  double source_fps() const { return source_fps_; }
  Counts counts() const override;

 private:
  at::Tensor frames_;  // [N, H, W, 3] uint8
  int64_t next_ = 0;
  double source_fps_ = 0;
  std::string framing_;  // what the crop to the session's size cost (CoverScaler::framing)
};

// A live input for VACE / video-to-video: a camera (V4L2, /dev/videoN) or any FFmpeg input device
// (libavdevice: x11grab, lavfi, ...). A capture thread decodes frames as they arrive and keeps
// those that fall on the `fps` grid (by presentation time), scaled to the session's size, in a
// queue of `queue_frames`. The generator takes them block by block; when it falls behind, a read
// takes the newest frames and the older queued ones are dropped (counted: latest frames win),
// and when the input stalls the last frame is
// repeated (counted) after `stall` so generation never blocks for long. An input that is lost (a
// read error: a camera unplugged; or its end) is reopened every 0.25 s for `reconnect_s`, its
// last frame held meanwhile, so a loose cable on stage does not end the conditioning.
struct LiveVideoOptions {
  std::string device = "/dev/video0";  // or the input device's spec ("testsrc2=size=320x240")
  std::string format = "v4l2";         // FFmpeg input device: v4l2, x11grab, lavfi, ...
  double fps = 16.0;
  int64_t queue_frames = 24;   // two blocks of 12 frames
  double stall_s = 0.5;        // wait this long for a frame before repeating the last one
  double first_frame_s = 5.0;  // cameras take a moment to start: IoError past this
  double reconnect_s = 10.0;   // reopen a lost input for this long before failing (0: never)
};

class LiveVideoSource final : public VaceFrameSource {
 public:
  // ConfigError for an unknown input format; IoError naming the device and format when it cannot
  // be opened (for V4L2: which /dev/video* exist and that `v4l2-ctl --list-devices` lists them);
  // FormatError when it has no video stream.
  LiveVideoSource(LiveVideoOptions options, int height, int width);
  ~LiveVideoSource() override;
  LiveVideoSource(const LiveVideoSource&) = delete;
  LiveVideoSource& operator=(const LiveVideoSource&) = delete;

  // [count, 3, H, W] float32 in [-1, 1]: the newest queued frames (older ones dropped), waiting for
  // new ones as the input delivers them. IoError when the input failed or gave no frame within
  // first_frame_s.
  at::Tensor next_frames(int64_t count) override;
  // What is queued now (waiting up to first_frame_s for the first frame when nothing was handed
  // out yet, stall_s otherwise), the latest repeated up to `count` (counted as repeated).
  at::Tensor first_frames(int64_t count) override;
  bool has_frames(int64_t count) const override;  // queued now
  bool filmed() const override { return true; }
  // As next_frames(count), each part handed out once its frames are filmed (the capture goes on
  // meanwhile).
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override;

  struct Stats {
    int64_t captured = 0;     // frames decoded from the input
    int64_t on_grid = 0;      // kept at `fps` (the rest fall between grid points)
    int64_t handed_out = 0;   // given to the generator, repeats included
    int64_t dropped = 0;      // kept but never given: the generator was behind
    int64_t repeated = 0;     // the last frame given again: the input stalled
    int64_t reconnects = 0;   // times the input was lost and reopened
    double input_fps = 0;     // the input's nominal rate (0 when unknown)
    std::string interrupted;  // why the input is being reopened (empty while frames come)
    std::string error;        // why capture ended for good (empty while it runs)
  };
  Stats stats() const;
  Counts counts() const override;

 private:
  // `count` frames, each waited for, or (hold) only the first, the latest held for the rest.
  at::Tensor take(int64_t count, bool hold);
  // The same, handed to `part_read` `part` frames at a time.
  void take(int64_t count, bool hold, int64_t part,
            const std::function<void(const at::Tensor&)>& part_read);
  struct Capture;
  std::unique_ptr<Capture> capture_;
};

// The inputs of the studio's Engine and `render` (longlive/live_inputs.h) read through FFmpeg:
// video files (VideoFileSource from the source's offset), cameras (LiveVideoSource; the
// source's format, v4l2 when empty), images (repeated), reference and mask images.
InputOpener ffmpeg_input_opener();

// An image (PNG, JPEG, ... anything FFmpeg decodes) as [1, 3, H, W] float32 in [-1, 1].
at::Tensor load_control_image(const std::filesystem::path& path, int height, int width);
// A mask image as [H, W] float32 of 0/1: 1 (bright, luma > 0.5) = generate, 0 = keep.
at::Tensor load_mask_image(const std::filesystem::path& path, int height, int width);

}  // namespace longlive
