#pragma once
// Flow-matching sampler of LongLive: the shifted 1000-step sigma table, the (warped) denoising
// timesteps, x0 from the flow prediction and re-noising towards the next timestep.
#include <ATen/ATen.h>

#include <vector>

namespace longlive {

class FlowMatchSampler {
 public:
  // steps: e.g. {1000, 750, 500, 250}; warp maps each step s to the shifted table's
  // timesteps[1000 - s] (1000 -> 1000, 750 -> 937.5, ...), as LongLive's warp_denoising_step.
  FlowMatchSampler(const std::vector<double>& steps, bool warp, double shift,
                   int64_t train_steps = 1000);

  // The timesteps fed to the model, one per denoising step.
  const std::vector<float>& timesteps() const { return step_timesteps_; }
  // Sigma of each denoising step (nearest table entry of its timestep).
  const std::vector<float>& step_sigmas() const { return step_sigmas_; }
  // The full tables (float32, 1000 entries), for tests.
  const at::Tensor& table_timesteps() const { return timesteps_; }
  const at::Tensor& table_sigmas() const { return sigmas_; }

  // Sigma looked up for a timestep: nearest entry of the table (t = 0 gives the last entry).
  float sigma_for(double timestep) const;

  // x0 = x_t - sigma * flow, computed in float64 and returned in float32.
  static at::Tensor to_x0(const at::Tensor& x_t, const at::Tensor& flow, double sigma);
  // (1 - sigma) * x0 + sigma * noise, in float32.
  static at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, float sigma);

 private:
  at::Tensor timesteps_;
  at::Tensor sigmas_;
  std::vector<float> table_t_;
  std::vector<float> table_s_;
  std::vector<float> step_timesteps_;
  std::vector<float> step_sigmas_;
};

}  // namespace longlive
