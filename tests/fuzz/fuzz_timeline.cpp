// libFuzzer: the session timeline parser either accepts a timeline that survives a round trip
// through to_json(), or throws ConfigError (bad fields) / FormatError (not JSON). Anything else,
// a foreign exception included, is a bug.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "longlive/error.h"
#include "longlive/timeline.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const longlive::Timeline timeline = longlive::parse_timeline(text, "fuzz.json");
    const nlohmann::json once = longlive::to_json(timeline);
    const longlive::Timeline again = longlive::parse_timeline(once.dump(), "fuzz-roundtrip.json");
    if (longlive::to_json(again) != once) std::abort();
    (void)timeline.presets();
  } catch (const longlive::ConfigError&) {
  } catch (const longlive::FormatError&) {
  }
  return 0;
}
