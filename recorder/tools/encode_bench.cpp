// encode_bench: frames per second of the recorder's encode + mux path for one codec, without
// LibTorch (so it runs on a machine that only has FFmpeg's libraries).
//   encode_bench [--codec auto|libx264|h264_nvenc|...] [--width 832] [--height 480]
//                [--frames 480] [--crf 18] [--out bench.mp4] [--threads N]
//                [--content smooth|noise] [--preset veryfast|superfast|ultrafast|...]
//                [--zerolatency 1|0]
// noise is the encoder's worst case (a random model's frames look like it).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "longlive/error.h"
#include "video_writer.h"

namespace {

// A moving smooth pattern, so the encoder does real work (a static image is nearly free).
std::vector<uint8_t> pattern(int width, int height, int index) {
  std::vector<uint8_t> rgba(static_cast<size_t>(width) * height * 4);
  const double t = index * 0.35;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &rgba[(static_cast<size_t>(y) * width + x) * 4];
      p[0] = static_cast<uint8_t>(127.5 + 110 * std::sin(x * 0.03 + t));
      p[1] = static_cast<uint8_t>(127.5 + 110 * std::cos(y * 0.04 - t));
      p[2] = static_cast<uint8_t>(127.5 + 100 * std::sin((x + y) * 0.02 + 2 * t));
      p[3] = 255;
    }
  }
  return rgba;
}

// Uniform random bytes (alpha opaque), seeded by the index.
std::vector<uint8_t> noise(int width, int height, int index) {
  std::vector<uint8_t> rgba(static_cast<size_t>(width) * height * 4);
  std::mt19937 rng(static_cast<uint32_t>(index));
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = i % 4 == 3 ? 255 : static_cast<uint8_t>(rng());
  return rgba;
}

}  // namespace

int main(int argc, char** argv) {
  longlive::detail::EncoderConfig config;
  config.path = "encode_bench.mp4";
  config.width = 832;
  config.height = 480;
  config.codec = "auto";
  int frames = 480;
  std::string content = "smooth";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--codec")
      config.codec = value;
    else if (key == "--width")
      config.width = std::atoi(value.c_str());
    else if (key == "--height")
      config.height = std::atoi(value.c_str());
    else if (key == "--frames")
      frames = std::atoi(value.c_str());
    else if (key == "--crf")
      config.crf = std::atoi(value.c_str());
    else if (key == "--out")
      config.path = value;
    else if (key == "--threads")
      config.threads = std::atoi(value.c_str());
    else if (key == "--preset")
      config.software_preset = value;
    else if (key == "--zerolatency")
      config.zero_latency = value != "0";
    else if (key == "--content" && (value == "smooth" || value == "noise"))
      content = value;
    else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      return 2;
    }
  }
  constexpr int kDistinct = 32;
  std::vector<std::vector<uint8_t>> sources;
  for (int i = 0; i < kDistinct; ++i)
    sources.push_back(content == "noise" ? noise(config.width, config.height, i)
                                         : pattern(config.width, config.height, i));
  try {
    using Clock = std::chrono::steady_clock;
    const auto open_start = Clock::now();
    longlive::detail::VideoWriter writer(config);
    const auto start = Clock::now();
    for (int i = 0; i < frames; ++i)
      writer.write_rgba(sources[i % kDistinct].data(), config.width * 4, i);
    writer.finish();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double open_ms = std::chrono::duration<double, std::milli>(start - open_start).count();
    std::printf(
        "codec %s %s%s | %dx%d %s | %d threads | %d frames | %.1f fps | %.2f ms/frame | open %.0f "
        "ms\n",
        writer.codec_name().c_str(), config.software_preset.c_str(),
        config.zero_latency ? " zerolatency" : "", config.width, config.height, content.c_str(),
        config.threads, frames, frames / seconds, 1e3 * seconds / frames, open_ms);
  } catch (const std::exception& e) {
    std::printf("codec %s unavailable: %s\n", config.codec.c_str(), e.what());
    return 1;
  }
  return 0;
}
