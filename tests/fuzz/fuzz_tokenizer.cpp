// libFuzzer: prompt text is whatever the performer types or pastes (any bytes, invalid UTF-8 and
// HTML entities included). The tokenizer must clean and encode it or reject an empty prompt with
// ConfigError; the result always has the documented layout. Uses the byte fallback tokenizer, and
// also the SentencePiece model named by LONGLIVE_FUZZ_SPM_MODEL when set (e.g. Wan's
// google/umt5-xxl spiece.model, not committed: 4 MB).
#include <ATen/ATen.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/text_encoder.h"

namespace {

constexpr int64_t kTextLen = 24;  // short, so long inputs exercise truncation

void check(const longlive::Tokenizer& tokenizer, std::string_view text) {
  try {
    const longlive::Tokens t = tokenizer.encode(text);
    if (!t.ids.sizes().equals({1, kTextLen}) || !t.mask.sizes().equals({1, kTextLen})) std::abort();
    if (t.valid_length < 1 || t.valid_length > kTextLen || t.dropped < 0) std::abort();
    if (t.mask.sum().item<int64_t>() != t.valid_length) std::abort();
    if (t.ids[0][t.valid_length - 1].item<int64_t>() != 1) std::abort();  // EOS last
    if (t.ids.narrow(1, t.valid_length, kTextLen - t.valid_length).ne(0).any().item<bool>())
      std::abort();  // padding is 0
  } catch (const longlive::ConfigError&) {
    // Only an empty prompt (after cleaning) is rejected.
    if (!longlive::Tokenizer::clean(text).empty()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = (longlive::log::set_level(longlive::log::Level::off), true);
  static const longlive::Tokenizer bytes = longlive::Tokenizer::byte_fallback(259, kTextLen);
  static const std::optional<longlive::Tokenizer> spm = []() -> std::optional<longlive::Tokenizer> {
    const char* model = std::getenv("LONGLIVE_FUZZ_SPM_MODEL");
    if (model == nullptr || *model == '\0') return std::nullopt;
    return longlive::Tokenizer::from_sentencepiece(model, kTextLen);
  }();
  (void)quiet;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string cleaned = longlive::Tokenizer::clean(text);
  // clean() collapses whitespace runs to one space and trims both ends.
  if (!cleaned.empty() && (std::isspace(static_cast<unsigned char>(cleaned.front())) ||
                           std::isspace(static_cast<unsigned char>(cleaned.back()))))
    std::abort();
  check(bytes, text);
  if (spm) check(*spm, text);
  return 0;
}
