#pragma once
// --stream-url / --virtual-camera for `generate` and `serve`: live video out (docs/performing.md,
// "Video out"). Frames go to each output's own thread; a slow receiver drops frames, never the
// generator.
#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "longlive/control.h"
#include "longlive/error.h"
#include "longlive/log.h"
#ifdef LONGLIVE_WITH_RECORDER
#include "longlive/video_out.h"
#endif

namespace longlive::cli {

struct VideoOutArgs {
  std::string stream_url;
  std::string virtual_camera;
  int stream_kbps = 4000;
  bool any() const { return !stream_url.empty() || !virtual_camera.empty(); }
};

inline void add_video_out_options(CLI::App* cmd, VideoOutArgs& a) {
  cmd->add_option("--stream-url", a.stream_url,
                  "Stream the video live: rtmp://host/app/key (FLV), srt://host:port or "
                  "udp://host:port (MPEG-TS); H.264, low-latency CBR");
  cmd->add_option("--stream-kbps", a.stream_kbps, "Stream bitrate in kbit/s")
      ->check(CLI::Range(100, 100000));
  cmd->add_option("--virtual-camera", a.virtual_camera,
                  "Write the video to a v4l2loopback device (e.g. /dev/video10)");
}

#ifdef LONGLIVE_WITH_RECORDER
// Opens the requested outputs (throws with a message naming the URL/device).
inline std::vector<std::unique_ptr<VideoOutput>> open_video_outputs(const VideoOutArgs& a,
                                                                    int width, int height) {
  std::vector<std::unique_ptr<VideoOutput>> outputs;
  if (!a.stream_url.empty()) {
    StreamOutputOptions o;
    o.url = a.stream_url;
    o.width = width;
    o.height = height;
    o.bitrate_kbps = a.stream_kbps;
    outputs.push_back(VideoOutput::stream(o));
    log::info("streaming to {} ({}, {} kbit/s)", a.stream_url, outputs.back()->codec_name(),
              a.stream_kbps);
  }
  if (!a.virtual_camera.empty()) {
    VirtualCameraOptions o;
    o.device = a.virtual_camera;
    o.width = width;
    o.height = height;
    outputs.push_back(VideoOutput::virtual_camera(o));
    log::info("virtual camera {}", a.virtual_camera);
  }
  return outputs;
}

// Closes each output and prints what it sent and dropped.
inline void close_video_outputs(std::vector<std::unique_ptr<VideoOutput>>& outputs) {
  for (auto& out : outputs) {
    try {
      out->close();
    } catch (const std::exception& e) {
      log::error("{}", e.what());
    }
    const auto s = out->stats();
    std::cout << fmt::format("video out {}: {} frames sent, {} dropped, {:.1f} KiB\n",
                             out->target(), s.frames_sent, s.frames_dropped, s.bytes_sent / 1024.0);
  }
  outputs.clear();
}
// `serve`'s outputs: on from the flags, switched by OSC (/longlive/out/stream,
// /longlive/out/camera) while the session runs; each opens at the first frame's size, off the
// engine's thread.
class VideoOutputs {
 public:
  explicit VideoOutputs(VideoOutArgs defaults) : defaults_(std::move(defaults)) {
    if (!defaults_.stream_url.empty()) enable_stream(defaults_.stream_url);
    if (!defaults_.virtual_camera.empty()) enable_camera(defaults_.virtual_camera);
  }
  void push(const at::Tensor& rgba) { outputs_.push(rgba); }  // the engine's thread
  void apply(const ControlCommand& c) {
    const bool stream = c.kind == ControlCommand::Kind::stream_out;
    const auto kind = stream ? LiveOutputs::Kind::stream : LiveOutputs::Kind::virtual_camera;
    if (!c.on) return outputs_.disable(kind);
    const std::string target =
        !c.file.empty() ? c.file : (stream ? defaults_.stream_url : defaults_.virtual_camera);
    if (target.empty()) {
      log::warn("{}: no {} given (here or with {})", describe(c), stream ? "URL" : "device",
                stream ? "--stream-url" : "--virtual-camera");
      return;
    }
    stream ? enable_stream(target) : enable_camera(target);
  }
  // Writes what is queued and prints what each output sent and dropped.
  void close() {
    outputs_.wait_idle();
    for (const auto kind : {LiveOutputs::Kind::stream, LiveOutputs::Kind::virtual_camera}) {
      const auto s = outputs_.status(kind);
      outputs_.disable(kind);
      if (s.target.empty()) continue;
      outputs_.wait_idle();
      const auto closed = outputs_.status(kind);
      std::cout << fmt::format("video out {}: {} frames sent, {} dropped, {:.1f} KiB{}\n", s.target,
                               closed.stats.frames_sent, closed.stats.frames_dropped,
                               closed.stats.bytes_sent / 1024.0,
                               closed.error ? " (" + *closed.error + ")" : "");
    }
  }

 private:
  void enable_stream(const std::string& url) {
    StreamOutputOptions o;
    o.url = url;
    o.bitrate_kbps = defaults_.stream_kbps;
    outputs_.enable_stream(o);
    log::info("streaming to {} ({} kbit/s) from the next frame", url, defaults_.stream_kbps);
  }
  void enable_camera(const std::string& device) {
    VirtualCameraOptions o;
    o.device = device;
    outputs_.enable_virtual_camera(o);
    log::info("virtual camera {} from the next frame", device);
  }
  VideoOutArgs defaults_;
  LiveOutputs outputs_;
};
#else
struct VideoOutput {};
class VideoOutputs {
 public:
  explicit VideoOutputs(const VideoOutArgs& a) {
    if (a.any()) throw ConfigError("--stream-url/--virtual-camera: this build has no FFmpeg");
  }
  void push(const at::Tensor&) {}
  void apply(const ControlCommand& c) {
    log::warn("{}: this build has no FFmpeg (no video out)", describe(c));
  }
  void close() {}
};
inline std::vector<std::unique_ptr<VideoOutput>> open_video_outputs(const VideoOutArgs& a, int,
                                                                    int) {
  if (a.any()) throw ConfigError("--stream-url/--virtual-camera: this build has no FFmpeg");
  return {};
}
inline void close_video_outputs(std::vector<std::unique_ptr<VideoOutput>>&) {}
#endif

}  // namespace longlive::cli
