#pragma once
// Live video out: the generated frames to a network stream (RTMP, SRT, UDP; H.264 in FLV or
// MPEG-TS, low-latency CBR) or to a virtual camera (a v4l2loopback device, raw I420).
//
// Unlike the Recorder, an output never slows the generator: push() copies the frame into a small
// bounded queue and returns at once; when the queue is full (the network or the camera reader
// is slower than the generator) the oldest queued frame is dropped and counted. Encoding and
// writing happen on the output's own thread. A write error ends the output: error() reports it
// and push() from then on only counts drops. See docs/performing.md ("Video out").
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace longlive {

struct StreamOutputOptions {
  // rtmp://host/app/key (FLV), srt://host:port (MPEG-TS), udp://host:port (MPEG-TS), or any other
  // libavformat URL / file path (the container is then taken from `container`).
  std::string url;
  int width = 0;  // even
  int height = 0;
  int fps = 16;
  int bitrate_kbps = 4000;  // constant bitrate with a one-second buffer
  // auto (h264_nvenc when it opens, else libx264), libx264, h264_nvenc.
  std::string codec = "auto";
  std::string container;  // empty: flv for rtmp(s)://, mpegts otherwise
  int gop_frames = 16;    // a keyframe every second: a receiver joining late waits at most that
  // Frames waiting for the encoder before the oldest is dropped. More than a block: the engine
  // hands out a block's frames (12 at 480p presets) at once.
  int queue_frames = 24;
  int io_timeout_ms = 5000;
};

struct VirtualCameraOptions {
  std::string device = "/dev/video10";  // a v4l2loopback device (or a FIFO, for tests)
  int width = 0;                        // even
  int height = 0;
  int fps = 16;
  int queue_frames = 24;  // more than a block, as for streams
};

struct VideoOutputStats {
  int64_t frames_pushed = 0;   // frames given to push()
  int64_t frames_sent = 0;     // frames encoded and written
  int64_t frames_dropped = 0;  // frames dropped (queue full, or after an error)
  int64_t bytes_sent = 0;
};

class VideoOutput {
 public:
  // Connects / opens the device and starts the output thread. Throws ConfigError (odd size,
  // unknown protocol, not a v4l2 output device) or IoError (cannot connect, no such device; the
  // message says how to load v4l2loopback).
  static std::unique_ptr<VideoOutput> stream(StreamOutputOptions options);
  static std::unique_ptr<VideoOutput> virtual_camera(VirtualCameraOptions options);

  ~VideoOutput();  // stops the thread: queued frames are written, the stream is closed
  VideoOutput(const VideoOutput&) = delete;
  VideoOutput& operator=(const VideoOutput&) = delete;

  // One RGBA8 frame (width*4 bytes per row, `stride` apart). Never blocks on the output: returns
  // false when a frame had to be dropped (this one after an error, else the oldest queued).
  bool push(const uint8_t* rgba, int stride);
  // One [height, width, 4] uint8 frame on any device (a CUDA frame is copied to the host first).
  bool push(const at::Tensor& rgba);
  // Writes what is queued, ends the stream (trailer) and joins the thread. Throws IoError if the
  // output failed. Idempotent.
  void close();

  VideoOutputStats stats() const;
  std::optional<std::string> error() const;  // the first write error, if any
  const std::string& target() const;         // the URL or the device
  std::string codec_name() const;            // the H.264 encoder in use ("rawvideo" for v4l2)

  struct Sink;  // the writing side (encoder + muxer, or the V4L2 device)

 private:
  VideoOutput(std::unique_ptr<Sink> sink, std::string target, int width, int height,
              int queue_frames);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The outputs of a long-running front end (the studio, `serve`), each switched on and off while
// frames flow, e.g. from a menu or an OSC message. Opening (a network connect can take seconds)
// and closing (the encoder flushes) run in order on a helper thread, so neither the caller nor
// the generator waits. An output opens at the size of the frames pushed to it and reopens when
// that size changes (a new resolution); frames that arrive while it opens are counted as dropped.
// An output that fails to open, or fails while writing, stays off with its error until switched
// on again.
class LiveOutputs {
 public:
  enum class Kind { stream, virtual_camera };
  struct Status {
    bool enabled = false;  // switched on (it may still be opening, or have failed)
    bool open = false;     // frames are being sent
    std::string target;    // the URL or the device
    std::string codec;
    VideoOutputStats stats;  // of the current (or last) output; drops while opening included
    std::optional<std::string> error;
  };
  // Makes the outputs; `open_stream` / `open_camera` stand in for VideoOutput::stream /
  // virtual_camera (tests).
  using StreamOpener = std::function<std::unique_ptr<VideoOutput>(StreamOutputOptions)>;
  using CameraOpener = std::function<std::unique_ptr<VideoOutput>(VirtualCameraOptions)>;
  LiveOutputs(StreamOpener open_stream = {}, CameraOpener open_camera = {});
  ~LiveOutputs();  // closes every output (queued frames are written) and joins the helper
  LiveOutputs(const LiveOutputs&) = delete;
  LiveOutputs& operator=(const LiveOutputs&) = delete;

  // Switches an output on (again: with the new options). The width and height in the options
  // are ignored: the output opens at the size of the next frame.
  void enable_stream(StreamOutputOptions options);
  void enable_virtual_camera(VirtualCameraOptions options);
  void disable(Kind kind);  // closes it on the helper thread
  // One [height, width, 4] uint8 frame, any thread; never blocks on an output.
  void push(const at::Tensor& rgba);
  Status status(Kind kind) const;
  // Waits until no open or close is pending (tests, and before reading the final stats).
  void wait_idle();
  // "stream rtmp://…: 412 sent, 3 dropped; camera /dev/video10: opening" ("" when all off).
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
std::string to_string(LiveOutputs::Kind kind);

// The container used for `url` when StreamOutputOptions::container is empty.
std::string stream_container_for(const std::string& url);

}  // namespace longlive
