// Transition and blend math, checked against closed forms computed here (not by prompt_mix.cpp).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <numbers>

#include "longlive/error.h"
#include "longlive/prompt_mix.h"

namespace longlive::test {
namespace {

constexpr double kPi = std::numbers::pi;

at::Tensor rows(std::vector<std::vector<double>> r) {
  const int64_t n = static_cast<int64_t>(r.size()), d = static_cast<int64_t>(r[0].size());
  at::Tensor t = at::zeros({1, n, d}, at::kDouble);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) t[0][i][j] = r[i][j];
  return t.to(at::kFloat);
}

double row_norm(const at::Tensor& x, int64_t row) {
  return x[0][row].to(at::kDouble).norm().item<double>();
}
double row_dot(const at::Tensor& x, int64_t i, const at::Tensor& y, int64_t j) {
  return (x[0][i].to(at::kDouble) * y[0][j].to(at::kDouble)).sum().item<double>();
}

template <typename E>
void expect_config_error(E&& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected ConfigError mentioning '" << needle << "'";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(PromptMix, LerpIsTheAffineCombinationAndExactAtTheEnds) {
  auto gen = at::detail::createCPUGenerator(5);
  const at::Tensor a = at::randn({1, 7, 16}, gen), b = at::randn({1, 7, 16}, gen);
  for (double t : {0.1, 0.25, 0.5, 0.9}) {
    const at::Tensor expected = a.to(at::kDouble) * (1 - t) + b.to(at::kDouble) * t;
    EXPECT_LT((lerp_embeddings(a, b, t).to(at::kDouble) - expected).abs().max().item<double>(),
              1e-6);
  }
  EXPECT_TRUE(at::equal(lerp_embeddings(a, b, 0), a));
  EXPECT_TRUE(at::equal(lerp_embeddings(a, b, 1), b));
}

TEST(PromptMix, SlerpFollowsTheGreatCircleAndInterpolatesLength) {
  // Row 0: orthogonal (90 degrees), lengths 2 -> 4. Row 1: 120 degrees, lengths 1 -> 1.
  const double c = std::cos(2 * kPi / 3), s = std::sin(2 * kPi / 3);
  const at::Tensor a = rows({{2, 0, 0, 0}, {0, 1, 0, 0}});
  const at::Tensor b = rows({{0, 4, 0, 0}, {0, c, s, 0}});
  for (double t : {0.2, 1.0 / 3, 0.5, 0.8}) {
    const at::Tensor m = slerp_embeddings(a, b, t);
    // Row 0 at angle t * 90 degrees in the (x, y) plane, length 2 + 2t.
    const double len0 = 2 + 2 * t;
    EXPECT_NEAR(m[0][0][0].item<double>(), len0 * std::cos(t * kPi / 2), 1e-5);
    EXPECT_NEAR(m[0][0][1].item<double>(), len0 * std::sin(t * kPi / 2), 1e-5);
    EXPECT_NEAR(m[0][0][2].item<double>(), 0, 1e-6);
    // Row 1 at angle t * 120 degrees from a in the (y, z) plane, unit length.
    EXPECT_NEAR(m[0][1][1].item<double>(), std::cos(t * 2 * kPi / 3), 1e-5);
    EXPECT_NEAR(m[0][1][2].item<double>(), std::sin(t * 2 * kPi / 3), 1e-5);
    EXPECT_NEAR(row_norm(m, 1), 1, 1e-5);
  }
  EXPECT_TRUE(at::equal(slerp_embeddings(a, b, 0), a));
  EXPECT_TRUE(at::equal(slerp_embeddings(a, b, 1), b));
}

TEST(PromptMix, SlerpOfRandomRowsKeepsAngleAndLength) {
  auto gen = at::detail::createCPUGenerator(11);
  const at::Tensor a = at::randn({1, 32, 64}, gen), b = at::randn({1, 32, 64}, gen) * 3;
  const double t = 0.3;
  const at::Tensor m = slerp_embeddings(a, b, t);
  for (int64_t r = 0; r < 32; ++r) {
    const double na = row_norm(a, r), nb = row_norm(b, r), nm = row_norm(m, r);
    const double theta = std::acos(row_dot(a, r, b, r) / (na * nb));
    EXPECT_NEAR(nm, (1 - t) * na + t * nb, 1e-4 * nm);
    EXPECT_NEAR(std::acos(std::clamp(row_dot(a, r, m, r) / (na * nm), -1.0, 1.0)), t * theta, 1e-4);
    EXPECT_NEAR(std::acos(std::clamp(row_dot(m, r, b, r) / (nm * nb), -1.0, 1.0)), (1 - t) * theta,
                1e-4);
  }
}

TEST(PromptMix, SlerpIsStableForIdenticalParallelAntiparallelAndZeroRows) {
  auto gen = at::detail::createCPUGenerator(3);
  const at::Tensor v = at::randn({1, 1, 64}, gen);
  const at::Tensor zero = at::zeros({1, 1, 64});
  // Rows: identical, parallel (b = 3a), antiparallel (b = -a), zero in a (padding), both zero.
  const at::Tensor a = at::cat({v, v, v, zero, zero}, 1);
  const at::Tensor b = at::cat({v, v * 3, -v, v, zero}, 1);
  const double nv = row_norm(v, 0);
  for (double t : {1e-9, 0.25, 0.5, 0.75, 1 - 1e-9}) {
    const at::Tensor m = slerp_embeddings(a, b, t);
    ASSERT_TRUE(at::isfinite(m).all().item<bool>()) << "t=" << t;
    EXPECT_LT((m[0][0] - v[0][0]).abs().max().item<double>(), 1e-5);
    EXPECT_LT((m[0][1] - v[0][0] * (1 + 2 * t)).abs().max().item<double>(), 1e-5 * (1 + 2 * t));
    // Antiparallel: a rotation by t * 180 degrees at constant length.
    EXPECT_NEAR(row_norm(m, 2), nv, 1e-4 * nv);
    EXPECT_NEAR(row_dot(m, 2, v, 0) / (nv * nv), std::cos(t * kPi), 1e-5);
    EXPECT_LT((m[0][3] - v[0][0] * t).abs().max().item<double>(), 1e-5);
    EXPECT_EQ(m[0][4].abs().max().item<double>(), 0);
  }
  const at::Tensor same = at::randn({1, 8, 32}, gen);
  EXPECT_TRUE(at::isfinite(slerp_embeddings(same, same, 0.5)).all().item<bool>());
  EXPECT_LT((slerp_embeddings(same, same, 0.5) - same).abs().max().item<double>(), 1e-5);
}

TEST(PromptMix, BlendsNormaliseWeights) {
  auto gen = at::detail::createCPUGenerator(9);
  std::vector<at::Tensor> e;
  for (int i = 0; i < 4; ++i) e.push_back(at::randn({1, 5, 8}, gen));
  auto close = [](const at::Tensor& x, const at::Tensor& y) {
    return (x.to(at::kDouble) - y.to(at::kDouble)).abs().max().item<double>() < 1e-6;
  };
  EXPECT_TRUE(close(blend_embeddings({e[0], e[1]}, {1, 3}, Interpolation::linear),
                    e[0] * 0.25 + e[1] * 0.75));
  EXPECT_TRUE(close(blend_embeddings(e, {2, 2, 2, 2}, Interpolation::linear),
                    (e[0] + e[1] + e[2] + e[3]) / 4));
  EXPECT_TRUE(close(blend_embeddings(e, {0, 0, 5, 0}, Interpolation::linear), e[2]));
  EXPECT_TRUE(at::equal(blend_embeddings({e[1]}, {0.3}, Interpolation::slerp), e[1]));
  // Slerp of two orthogonal unit rows with equal weights: the 45-degree bisector.
  const at::Tensor x = rows({{1, 0}}), y = rows({{0, 1}});
  const at::Tensor mid = blend_embeddings({x, y}, {4, 4}, Interpolation::slerp);
  EXPECT_NEAR(mid[0][0][0].item<double>(), std::sqrt(0.5), 1e-6);
  EXPECT_NEAR(mid[0][0][1].item<double>(), std::sqrt(0.5), 1e-6);
  EXPECT_EQ(normalized_weights({1, 3}), (std::vector<double>{0.25, 0.75}));
}

TEST(PromptMix, BadBlendsNameTheProblem) {
  const at::Tensor e = at::zeros({1, 4, 8});
  expect_config_error(
      [&] {
        blend_embeddings({e, e, e, e, e}, {1, 1, 1, 1, 1}, Interpolation::linear);
      },
      "expected 1 to 4");
  expect_config_error(
      [&] {
        blend_embeddings({e, e}, {1, -1}, Interpolation::linear);
      },
      "weight -1 of prompt 2");
  expect_config_error([&] { blend_embeddings({e, e}, {0, 0}, Interpolation::linear); }, "sum to 0");
  expect_config_error(
      [&] {
        blend_embeddings({e, e, e}, {1, 1, 1}, Interpolation::slerp);
      },
      "exactly two");
  expect_config_error(
      [&] {
        blend_embeddings({e, at::zeros({1, 4, 9})}, {1, 1}, Interpolation::linear);
      },
      "[1, 4, 9]");
  expect_config_error([&] { parse_interpolation("cubic", "transition.interpolation"); },
                      "transition.interpolation");
}

}  // namespace
}  // namespace longlive::test
