// longlive probe FILE : decode a video and report frames, size, codec and duration.
#ifdef LONGLIVE_WITH_RECORDER
#include <fmt/format.h>

#include <iostream>

#include "command.h"
#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive::cli {
namespace {

const Registrar kProbe("probe", [](CLI::App& root) {
  auto* cmd = root.add_subcommand("probe", "Decode a video file and report what it holds");
  auto file = std::make_shared<std::string>();
  auto expect = std::make_shared<int64_t>(-1);
  cmd->add_option("file", *file, "Video file")->required();
  cmd->add_option("--expect-frames", *expect, "Fail unless exactly this many frames decode");
  return [file, expect]() {
    const DecodedVideo v = read_video(*file, false);
    const double duration = v.timestamps_s.empty() ? 0 : v.timestamps_s.back();
    std::cout << fmt::format("{}: {} frames, {}x{}, {}, last frame at {:.3f} s\n", *file, v.frames,
                             v.width, v.height, v.codec, duration);
    for (const auto& [key, value] : v.metadata)
      if (key != "description") std::cout << fmt::format("  {}: {}\n", key, value);
    for (const VideoChapter& c : v.chapters)
      std::cout << fmt::format("  chapter {:.3f}-{:.3f} s: {}\n", c.start_s, c.end_s, c.title);
    if (*expect >= 0 && v.frames != *expect) {
      throw FormatError(
          fmt::format("{}: {} frames decoded, expected {}", *file, v.frames, *expect));
    }
    return 0;
  };
});

}  // namespace
}  // namespace longlive::cli
#endif
