#pragma once
// Mixing prompt embeddings: interpolation between two conditionings (prompt transitions) and
// weighted blends of up to four prompts. Pure tensor math on the embeddings' device: no host
// reads of device values, so it can run at block edges of a CUDA stream without a sync.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace longlive {

enum class Interpolation { linear, slerp };

std::string to_string(Interpolation v);
// "linear" or "slerp"; ConfigError naming `field` otherwise.
Interpolation parse_interpolation(const std::string& text, const std::string& field);

// (1 - t) a + t b. t = 0 returns a, t = 1 returns b (exact copies).
at::Tensor lerp_embeddings(const at::Tensor& a, const at::Tensor& b, double t);

// Spherical interpolation per token (rows of the last dimension): the direction follows the great
// circle from a's to b's direction, the length goes linearly from |a| to |b|. Stable where the
// angle is undefined or degenerate:
//   - identical / parallel directions: the direction stays put (no 0/0);
//   - antiparallel directions: rotates through a fixed direction orthogonal to a (half-way is
//     orthogonal to both, length interpolated);
//   - a zero row on either side (padding after a shorter prompt): linear interpolation.
// t = 0 returns a, t = 1 returns b (exact copies). Computed in float64 (2M elements for the real
// [1, 512, 4096]: cheap next to one DiT step), returned in a's dtype.
at::Tensor slerp_embeddings(const at::Tensor& a, const at::Tensor& b, double t);

at::Tensor interpolate_embeddings(const at::Tensor& a, const at::Tensor& b, double t,
                                  Interpolation mode);

// A prompt transition: how many blocks the text conditioning takes to reach its target.
struct TransitionOptions {
  int64_t blocks = 0;  // 0: hard cut (exactly switch_prompt)
  Interpolation interpolation = Interpolation::slerp;
  bool recache_at_end = false;  // the last block re-caches the recent frames under the target
  bool operator==(const TransitionOptions&) const = default;
};

constexpr size_t kMaxBlendPrompts = 4;

// Weights divided by their sum. ConfigError for 0 or more than kMaxBlendPrompts weights, negative
// or non-finite weights, or a zero sum.
std::vector<double> normalized_weights(const std::vector<double>& weights);

// Weighted blend of 1..4 embeddings of one shape. linear: sum of w_i e_i with normalised weights;
// slerp: two prompts only, slerp(e0, e1, w1 / (w0 + w1)). One prompt returns it unchanged.
at::Tensor blend_embeddings(const std::vector<at::Tensor>& embeddings,
                            const std::vector<double>& weights, Interpolation mode);

struct WeightedPrompt {
  std::string text;
  double weight = 1;
  bool operator==(const WeightedPrompt&) const = default;
};

// Text conditioning: one prompt, or a weighted blend of up to kMaxBlendPrompts.
struct PromptMix {
  std::vector<WeightedPrompt> prompts;
  Interpolation blend = Interpolation::linear;  // slerp: two prompts only

  static PromptMix single(std::string text) { return {{{std::move(text), 1.0}}}; }
  // "a fox" for one prompt, "0.25 a fox + 0.75 a whale" for a blend (normalised weights).
  std::string label() const;
  // ConfigError prefixed with `field`: no prompts, more than four, empty text, bad weights,
  // slerp with other than two prompts.
  void validate(const std::string& field) const;
  bool operator==(const PromptMix&) const = default;
};

}  // namespace longlive
