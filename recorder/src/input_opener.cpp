// The engine's InputOpener through FFmpeg (see longlive/control_input.h). Apart from the readers
// in control_input.cpp so that those build without the engine (the video reader's fuzz target).
#include <fmt/format.h>

#include <memory>

#include "longlive/control_input.h"
#include "longlive/error.h"

namespace longlive {

InputOpener ffmpeg_input_opener() {
  InputOpener opener;
  opener.frames = [](const InputSource& source, int height,
                     int width) -> std::shared_ptr<VaceFrameSource> {
    switch (source.kind) {
      case InputKind::video: {
        auto video = std::make_shared<VideoFileSource>(source.path, height, width);
        video->skip(source.offset);
        return video;
      }
      case InputKind::camera: {
        LiveVideoOptions live;
        live.device = source.path;
        if (!source.format.empty()) live.format = source.format;
        return std::make_shared<LiveVideoSource>(live, height, width);
      }
      case InputKind::image:
        return std::make_shared<StillFrameSource>(load_control_image(source.path, height, width));
      default:
        throw ConfigError(fmt::format("{}: not a source FFmpeg opens", source.describe()));
    }
  };
  opener.image = [](const std::filesystem::path& path, int height, int width) {
    return load_control_image(path, height, width);
  };
  opener.mask = [](const std::filesystem::path& path, int height, int width) {
    return load_mask_image(path, height, width);
  };
  return opener;
}

}  // namespace longlive
