#include <ATen/ATen.h>
#include <fmt/format.h>
#include <sentencepiece_processor.h>

#include <cctype>
#include <map>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/text_encoder.h"

namespace longlive {
namespace {

constexpr int64_t kPadId = 0;
constexpr int64_t kEosId = 1;

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp <= 0x10FFFF) {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// One pass of HTML unescaping: numeric (&#65; &#x41;) and the common named entities.
std::string html_unescape(std::string_view s) {
  static const std::map<std::string, std::string> kNamed = {{"amp", "&"},
                                                            {"lt", "<"},
                                                            {"gt", ">"},
                                                            {"quot", "\""},
                                                            {"apos", "'"},
                                                            {"nbsp", "\xC2\xA0"},
                                                            {"ndash", "\xE2\x80\x93"},
                                                            {"mdash", "\xE2\x80\x94"},
                                                            {"hellip", "\xE2\x80\xA6"},
                                                            {"copy", "\xC2\xA9"},
                                                            {"reg", "\xC2\xAE"},
                                                            {"deg", "\xC2\xB0"}};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      const size_t end = s.find(';', i + 1);
      if (end != std::string_view::npos && end - i <= 12) {
        const std::string body(s.substr(i + 1, end - i - 1));
        if (!body.empty() && body[0] == '#') {
          const bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
          const std::string digits = body.substr(hex ? 2 : 1);
          if (!digits.empty() &&
              digits.find_first_not_of(hex ? "0123456789abcdefABCDEF" : "0123456789") ==
                  std::string::npos &&
              digits.size() <= 7) {
            append_utf8(out, static_cast<uint32_t>(std::stoul(digits, nullptr, hex ? 16 : 10)));
            i = end;
            continue;
          }
        } else if (auto it = kNamed.find(body); it != kNamed.end()) {
          out += it->second;
          i = end;
          continue;
        }
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<sentencepiece::SentencePieceProcessor> spm;  // null: byte fallback
  int64_t byte_vocab = 0;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_sentencepiece(const std::filesystem::path& model, int64_t text_len) {
  Tokenizer t;
  t.text_len_ = text_len;
  t.impl_->spm = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = t.impl_->spm->Load(model.string());
  if (!status.ok())
    throw IoError(fmt::format("cannot load tokenizer '{}': {}", model.string(), status.ToString()));
  return t;
}

Tokenizer Tokenizer::byte_fallback(int64_t vocab, int64_t text_len) {
  if (vocab < 3)
    throw ConfigError(
        fmt::format("byte tokenizer needs a vocabulary of at least 3, got {}", vocab));
  Tokenizer t;
  t.text_len_ = text_len;
  t.impl_->byte_vocab = vocab;
  return t;
}

std::string Tokenizer::clean(std::string_view text) {
  const std::string unescaped = html_unescape(html_unescape(text));
  std::string out;
  bool pending_space = false;
  for (unsigned char c : unescaped) {
    if (std::isspace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += static_cast<char>(c);
  }
  return out;
}

Tokens Tokenizer::encode(std::string_view text) const {
  const std::string cleaned = clean(text);
  if (cleaned.empty())
    throw ConfigError("the prompt is empty (or only whitespace): type what the video should show");
  std::vector<int64_t> ids;
  if (impl_->spm) {
    std::vector<int> pieces;
    const auto status = impl_->spm->Encode(cleaned, &pieces);
    if (!status.ok())
      throw ConfigError(fmt::format("cannot tokenize the prompt: {}", status.ToString()));
    ids.assign(pieces.begin(), pieces.end());
  } else {
    for (unsigned char c : cleaned) ids.push_back(2 + c % (impl_->byte_vocab - 2));
  }
  Tokens tokens;
  const int64_t room = text_len_ - 1;  // EOS always fits
  if (static_cast<int64_t>(ids.size()) > room) {
    tokens.dropped = static_cast<int64_t>(ids.size()) - room;
    ids.resize(static_cast<size_t>(room));
    log::warn("prompt is {} tokens long; the last {} tokens were dropped (limit {} including EOS)",
              ids.size() + tokens.dropped, tokens.dropped, text_len_);
  }
  ids.push_back(kEosId);
  tokens.valid_length = static_cast<int64_t>(ids.size());
  tokens.ids = at::full({1, text_len_}, kPadId, at::kLong);
  tokens.mask = at::zeros({1, text_len_}, at::kLong);
  for (size_t i = 0; i < ids.size(); ++i) tokens.ids[0][static_cast<int64_t>(i)] = ids[i];
  tokens.mask.narrow(1, 0, tokens.valid_length).fill_(1);
  return tokens;
}

}  // namespace longlive
