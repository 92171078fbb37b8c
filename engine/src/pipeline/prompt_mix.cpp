#include "longlive/prompt_mix.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numbers>

#include "longlive/error.h"

namespace longlive {
namespace {

void check_pair(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined() || !b.defined()) throw ConfigError("prompt mix: undefined embeddings");
  if (a.sizes() != b.sizes())
    throw ConfigError(fmt::format("prompt mix: embeddings of shapes [{}] and [{}] differ",
                                  fmt::join(a.sizes(), ", "), fmt::join(b.sizes(), ", ")));
  if (a.device() != b.device())
    throw ConfigError(
        fmt::format("prompt mix: embeddings on {} and {}", a.device().str(), b.device().str()));
}

}  // namespace

std::string to_string(Interpolation v) { return v == Interpolation::slerp ? "slerp" : "linear"; }

Interpolation parse_interpolation(const std::string& text, const std::string& field) {
  if (text == "linear") return Interpolation::linear;
  if (text == "slerp") return Interpolation::slerp;
  throw ConfigError(
      fmt::format("{}: '{}' is not an interpolation (expected linear or slerp)", field, text));
}

at::Tensor lerp_embeddings(const at::Tensor& a, const at::Tensor& b, double t) {
  check_pair(a, b);
  if (t <= 0) return a.clone();
  if (t >= 1) return b.clone();
  return at::lerp(a, b, t);
}

at::Tensor slerp_embeddings(const at::Tensor& a, const at::Tensor& b, double t) {
  check_pair(a, b);
  if (t <= 0) return a.clone();
  if (t >= 1) return b.clone();
  const at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  const at::Tensor na = x.norm(2, -1, true), nb = y.norm(2, -1, true);
  // Rows whose angle is undefined (a zero vector) interpolate linearly.
  const at::Tensor degenerate = (na < 1e-30).logical_or(nb < 1e-30);
  const at::Tensor ua = x / na.clamp_min(1e-30), ub = y / nb.clamp_min(1e-30);
  const at::Tensor cos = (ua * ub).sum(-1, true).clamp(-1.0, 1.0);
  const at::Tensor theta = at::acos(cos);
  const at::Tensor sin = at::sin(theta);

  // Generic great circle. Where sin(theta) underflows on the parallel side the weights' limits
  // are (1 - t, t), so parallel rows stay on their direction instead of dividing 0 by 0.
  const at::Tensor flat = sin < 1e-12;
  const at::Tensor sin_safe = at::where(flat, at::ones_like(sin), sin);
  const at::Tensor wa =
      at::where(flat, at::full_like(sin, 1 - t), at::sin((1 - t) * theta) / sin_safe);
  const at::Tensor wb = at::where(flat, at::full_like(sin, t), at::sin(t * theta) / sin_safe);
  at::Tensor direction = wa * ua + wb * ub;

  // Antiparallel: every great circle through a and -a is a geodesic, and the generic weights
  // cancel to a zero direction (b's direction is -a's to rounding); take the circle through the
  // unit vector p orthogonal to a built from a's smallest coordinate axis (|p| >= sqrt(1 - 1/D)).
  // Within 1e-6 of cos = -1 (0.08 degrees) the rows count as antiparallel.
  const at::Tensor opposite = cos < -1 + 1e-6;
  const at::Tensor axis = ua.abs().argmin(-1, true);
  const at::Tensor e = at::zeros_like(ua).scatter_(-1, axis, 1.0);
  at::Tensor p = e - ua.gather(-1, axis) * ua;
  p = p / p.norm(2, -1, true).clamp_min(1e-30);
  const double angle = t * std::numbers::pi;
  direction = at::where(opposite, std::cos(angle) * ua + std::sin(angle) * p, direction);

  const at::Tensor length = (1 - t) * na + t * nb;
  const at::Tensor out = at::where(degenerate, at::lerp(x, y, t), length * direction);
  return out.to(a.scalar_type());
}

at::Tensor interpolate_embeddings(const at::Tensor& a, const at::Tensor& b, double t,
                                  Interpolation mode) {
  return mode == Interpolation::slerp ? slerp_embeddings(a, b, t) : lerp_embeddings(a, b, t);
}

std::vector<double> normalized_weights(const std::vector<double>& weights) {
  if (weights.empty() || weights.size() > kMaxBlendPrompts)
    throw ConfigError(
        fmt::format("blend: {} prompts given, expected 1 to {}", weights.size(), kMaxBlendPrompts));
  double sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!std::isfinite(weights[i]) || weights[i] < 0)
      throw ConfigError(
          fmt::format("blend: weight {} of prompt {} must be finite and >= 0", weights[i], i + 1));
    sum += weights[i];
  }
  if (!(sum > 0)) throw ConfigError("blend: the weights sum to 0; give at least one prompt weight");
  std::vector<double> out = weights;
  for (double& w : out) w /= sum;
  return out;
}

at::Tensor blend_embeddings(const std::vector<at::Tensor>& embeddings,
                            const std::vector<double>& weights, Interpolation mode) {
  if (embeddings.size() != weights.size())
    throw ConfigError(
        fmt::format("blend: {} embeddings but {} weights", embeddings.size(), weights.size()));
  const std::vector<double> w = normalized_weights(weights);
  for (size_t i = 1; i < embeddings.size(); ++i) check_pair(embeddings[0], embeddings[i]);
  if (embeddings.size() == 1) return embeddings[0];
  if (mode == Interpolation::slerp) {
    if (embeddings.size() != 2)
      throw ConfigError(fmt::format(
          "blend: slerp mixes exactly two prompts ({} given); use linear for more", w.size()));
    return slerp_embeddings(embeddings[0], embeddings[1], w[1]);
  }
  at::Tensor sum = embeddings[0] * w[0];
  for (size_t i = 1; i < embeddings.size(); ++i) sum.add_(embeddings[i], w[i]);
  return sum;
}

std::string PromptMix::label() const {
  if (prompts.size() == 1) return prompts[0].text;
  std::vector<double> weights;
  for (const auto& p : prompts) weights.push_back(p.weight);
  std::vector<double> w;
  try {
    w = normalized_weights(weights);
  } catch (const ConfigError&) {
    w = weights;
  }
  std::vector<std::string> parts;
  for (size_t i = 0; i < prompts.size(); ++i)
    parts.push_back(fmt::format("{:.2f} {}", w[i], prompts[i].text));
  return fmt::format("{}", fmt::join(parts, " + "));
}

void PromptMix::validate(const std::string& field) const {
  std::vector<double> weights;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& text = prompts[i].text;
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }))
      throw ConfigError(fmt::format("{}[{}].text: the prompt is empty", field, i));
    weights.push_back(prompts[i].weight);
  }
  try {
    normalized_weights(weights);
    if (blend == Interpolation::slerp && prompts.size() > 2)
      throw ConfigError(
          fmt::format("blend slerp mixes two prompts ({} given); use linear", prompts.size()));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", field, e.what()));
  }
}

}  // namespace longlive
