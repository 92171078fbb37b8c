// libFuzzer: the prompt-set parser either accepts a set that survives a round trip through
// to_json() and respects its documented limits, or throws ConfigError / FormatError.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "longlive/error.h"
#include "longlive/timeline.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const longlive::PromptSet set = longlive::parse_prompt_set(text, "fuzz.json");
    if (set.prompts.empty() || set.prompts.size() > longlive::kMaxPromptSetSize) std::abort();
    for (const auto& p : set.prompts) {
      if (!(p.weight >= 0)) std::abort();
    }
    const nlohmann::json once = longlive::to_json(set);
    const longlive::PromptSet again =
        longlive::parse_prompt_set(once.dump(), "fuzz-roundtrip.json");
    if (longlive::to_json(again) != once) std::abort();
  } catch (const longlive::ConfigError&) {
  } catch (const longlive::FormatError&) {
  }
  return 0;
}
