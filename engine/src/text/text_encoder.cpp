#include <ATen/ATen.h>
#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/text_encoder.h"

namespace longlive {

TextEncoder::TextEncoder(Tokenizer tokenizer, std::unique_ptr<UMT5Encoder> encoder)
    : tokenizer_(std::move(tokenizer)), encoder_(std::move(encoder)) {}

std::unique_ptr<TextEncoder> TextEncoder::open(const std::filesystem::path& weights_file,
                                               const std::filesystem::path& spiece_model,
                                               const TextEncoderOptions& options) {
  const WeightStore weights = WeightStore::open(weights_file);
  auto encoder = std::make_unique<UMT5Encoder>(weights, UMT5Config::infer(weights), options.device,
                                               options.dtype);
  return std::make_unique<TextEncoder>(Tokenizer::from_sentencepiece(spiece_model),
                                       std::move(encoder));
}

at::Tensor TextEncoder::encode(std::string_view prompt) const {
  const Tokens tokens = tokenizer_.encode(prompt);
  at::Tensor out = encoder_->forward(tokens.ids, tokens.mask);
  // The pipeline zeroes every position at or after the valid length.
  out.narrow(1, tokens.valid_length, out.size(1) - tokens.valid_length).zero_();
  return out;
}

}  // namespace longlive
