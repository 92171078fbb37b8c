#pragma once
// What TAEHV's decoder (taehv.cpp) and encoder (taehv_encoder.cpp) share about their weights: the
// one taew2_1 file holds both halves, and their random stand-ins are made alike.
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "longlive/weights.h"

namespace longlive::taehv_weights {

// The `half`.* tensors ("decoder" or "encoder") of a taew2_1 file (.pth or .safetensors);
// WeightError naming the file when it has none.
WeightStore read_half(const std::filesystem::path& file, const std::string& half);

// Random fp16 conv weights as taew2_1 stores them: weight N(0, 1) * gain / sqrt(fan in), bias
// 0.05 * N(0, 1), drawn in that order from `generator`.
class RandomConvs {
 public:
  RandomConvs(uint64_t seed, std::string origin, double gain);
  void add(const std::string& name, int64_t out, int64_t in, int64_t kernel, bool bias);
  WeightStore take() { return std::move(weights_); }

 private:
  at::Generator generator_;
  std::string origin_;
  double gain_;
  WeightStore weights_;
};

}  // namespace longlive::taehv_weights
