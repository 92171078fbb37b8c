// libFuzzer: the preset parser either accepts a preset that survives a round trip through
// to_json(), or throws ConfigError. Anything else is a bug.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "longlive/error.h"
#include "longlive/preset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const longlive::Preset preset = longlive::parse_preset(text, "fuzz.json");
    const std::string again = longlive::to_json(preset).dump();
    const longlive::Preset reparsed = longlive::parse_preset(again, "fuzz-roundtrip.json");
    if (longlive::to_json(reparsed) != longlive::to_json(preset)) std::abort();
  } catch (const longlive::ConfigError&) {
  }
  return 0;
}
