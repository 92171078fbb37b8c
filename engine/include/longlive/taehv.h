#pragma once
// TAEHV (taew2_1), the tiny streaming decoder for live preview: a StreamingDecoder built from its
// weights by their original names (`decoder.*`, from taew2_1.pth or safetensors).
#include <cstdint>
#include <filesystem>
#include <memory>

#include "longlive/decoder.h"
#include "longlive/weights.h"

namespace longlive {

std::unique_ptr<StreamingDecoder> make_taehv_decoder(const WeightStore& weights,
                                                     const DecoderOptions& options);
// Loads taew2_1.pth / safetensors, keeping the `decoder.*` tensors.
WeightStore load_taehv_weights(const std::filesystem::path& file);
// Random TAEHV weights (full architecture, as the class fixes its widths) for tests and benches.
WeightStore make_random_taehv_weights(uint64_t seed);

}  // namespace longlive
