#include "sampler/flow_match.h"

#include <fmt/format.h>

#include <cmath>

#include "longlive/error.h"

namespace longlive {

FlowMatchSampler::FlowMatchSampler(const std::vector<double>& steps, bool warp, double shift,
                                   int64_t train_steps) {
  // Same float32 arithmetic as the reference scheduler (linspace over train_steps + 1 points,
  // last one dropped, then the shift), so the tables match it bit for bit.
  at::Tensor sigmas = at::linspace(1.0, 0.0, train_steps + 1, at::kFloat).narrow(0, 0, train_steps);
  sigmas = shift * sigmas / (1 + (shift - 1) * sigmas);
  sigmas_ = sigmas.contiguous();
  timesteps_ = (sigmas_ * static_cast<double>(train_steps)).contiguous();
  table_t_.assign(timesteps_.data_ptr<float>(), timesteps_.data_ptr<float>() + train_steps);
  table_s_.assign(sigmas_.data_ptr<float>(), sigmas_.data_ptr<float>() + train_steps);

  for (double s : steps) {
    if (!(s > 0 && s <= static_cast<double>(train_steps))) {
      throw ConfigError(fmt::format("denoising step {} is outside (0, {}]", s, train_steps));
    }
    float t = static_cast<float>(s);
    if (warp) {
      const auto index = static_cast<int64_t>(std::llround(static_cast<double>(train_steps) - s));
      t = index < train_steps ? table_t_[static_cast<size_t>(index)] : 0.0f;
    }
    step_timesteps_.push_back(t);
    step_sigmas_.push_back(sigma_for(t));
  }
}

float FlowMatchSampler::sigma_for(double timestep) const {
  size_t best = 0;
  double best_distance = std::abs(static_cast<double>(table_t_[0]) - timestep);
  for (size_t i = 1; i < table_t_.size(); ++i) {
    const double distance = std::abs(static_cast<double>(table_t_[i]) - timestep);
    if (distance < best_distance) {  // first minimum wins, like argmin
      best = i;
      best_distance = distance;
    }
  }
  return table_s_[best];
}

at::Tensor FlowMatchSampler::to_x0(const at::Tensor& x_t, const at::Tensor& flow, double sigma) {
  return (x_t.to(at::kDouble) -
          static_cast<double>(static_cast<float>(sigma)) * flow.to(at::kDouble))
      .to(at::kFloat);
}

at::Tensor FlowMatchSampler::add_noise(const at::Tensor& x0, const at::Tensor& noise, float sigma) {
  const at::Tensor s = at::scalar_tensor(sigma, x0.options().dtype(at::kFloat));
  return (1 - s) * x0.to(at::kFloat) + s * noise.to(at::kFloat);
}

}  // namespace longlive
