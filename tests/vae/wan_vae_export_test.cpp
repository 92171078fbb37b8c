// Export-grade Wan VAE decode: temporal slicing is exact, spatial tiling is exact wherever one tile
// holds an output pixel's whole receptive field and approximate only near the tile borders, and the
// planned memory budget holds on the CPU allocator.
//
// Comparisons with float32 decodes allow the float32 rounding floor of the fixture's configuration
// (wan_vae_rounding.h); in float64, slicing is held to the one-call decode exactly.
//
// How the budget is measured: a counting CPU allocator (counting_allocator.h) replaces LibTorch's
// CPU allocator during the decode and records the peak bytes of tensors allocated inside it (the
// weights and inputs, allocated before, are outside the budget by definition). Output slices are
// copied into a buffer allocated beforehand, so the measure is the decoder's working set +
// feature caches + slice staging. oneDNN scratchpads bypass c10 and are not counted.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>

#include "counting_allocator.h"
#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/wan_vae.h"
#include "wan_vae_rounding.h"

namespace longlive::test {
namespace {

double psnr(const at::Tensor& a, const at::Tensor& b) {  // both in [0, 1]
  const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return 10.0 * std::log10(1.0 / std::max(mse, 1e-20));
}

// Decodes into one tensor allocated before the call.
at::Tensor export_all(const WanVaeDecoder& decoder, const at::Tensor& latents,
                      const WanVaeExportOptions& options, WanVaeExportPlan* plan) {
  const int64_t s = decoder.config().spatial_scale();
  at::Tensor all = at::empty(
      {decoder.frames_for(latents.size(1), true), 3, latents.size(3) * s, latents.size(4) * s});
  int64_t filled = 0;
  *plan = decode_wan_vae_video(decoder, latents, options, [&](const at::Tensor& frames) {
    all.narrow(0, filled, frames.size(0)).copy_(frames);
    filled += frames.size(0);
  });
  EXPECT_EQ(filled, all.size(0));
  return all;
}

// Latent pixels (each side) an output pixel of the upsampling branch depends on, from the config:
// walking back from the output, the head conv and every 3x3 conv of a stage (two per residual
// block, num_res_blocks + 1 blocks) add one pixel at their resolution, a resample adds its conv's
// one, and its 2x nearest upsampling halves the reach, rounded up. 13 for the Wan 2.1 layout.
int64_t branch_radius(const WanVaeConfig& c) {
  int64_t r = 1;  // head
  for (size_t stage = c.dim_mult.size(); stage-- > 0;) {
    r += 2 * (c.num_res_blocks + 1);
    if (stage > 0) r = (r + 2) / 2;  // the resample's conv, then half the resolution
  }
  return r;
}

// Float32 rounding noise of an untiled decode of `latents`: its difference to the untiled decode
// in another evaluation order (one latent frame per pass, channels-last), largest and mean.
struct Noise {
  double max = 0, mean = 0;
};
Noise rounding_noise(const WeightStore& weights, const at::Tensor& latents,
                     const at::Tensor& untiled) {
  WanVaeDecoderOptions options;
  options.latent_frames_per_pass = 1;
  options.layout = DecoderLayout::channels_last;
  const at::Tensor diff =
      (WanVaeDecoder(weights, options).decode(latents).to(at::kDouble) - untiled.to(at::kDouble))
          .abs();
  return {diff.max().item<double>(), diff.mean().item<double>()};
}

// Where one tile decodes an output pixel alone (weight 1) with its whole receptive field inside
// that tile, tiling changes nothing: there the tiled decode equals the untiled one within float32
// rounding. The largest difference is held to the rounding tolerance of the largest noise
// (wan_vae_rounding.h); the mean, which the few ill-conditioned pixels of a narrow model do not
// move, to 10 times the mean noise. The frame is cut into 2 x 2 tiles: [0, tile) and
// [n - tile, n) per axis.
void expect_untouched_beyond_tile_borders(const at::Tensor& tiled, const at::Tensor& untiled,
                                          const WanVaeExportPlan& plan, const WanVaeConfig& config,
                                          const Noise& noise) {
  ASSERT_EQ(plan.tiles_y, 2);
  ASSERT_EQ(plan.tiles_x, 2);
  const int64_t r = branch_radius(config), scale = config.spatial_scale();
  auto axis = [&](int64_t n, int64_t tile) {
    std::vector<int64_t> inside(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c)
      inside[size_t(c)] = (c < n - tile && c + r < tile) || (c >= tile && c - r >= n - tile);
    return at::tensor(inside).to(at::kBool).repeat_interleave(scale);
  };
  const at::Tensor mask = axis(untiled.size(2) / scale, plan.tile_h)
                              .unsqueeze(1)
                              .logical_and(axis(untiled.size(3) / scale, plan.tile_w).unsqueeze(0));
  const int64_t pixels = mask.sum().item<int64_t>();
  ASSERT_GT(pixels, 0) << "no output pixel beyond the tile borders' reach";
  const at::Tensor diff =
      (tiled.to(at::kDouble) - untiled.to(at::kDouble)).abs().masked_select(mask.expand_as(tiled));
  const double largest = diff.max().item<double>(), mean = diff.mean().item<double>();
  const double largest_tolerance = rounding_tolerance(noise.max);
  const double mean_tolerance = std::max(10 * noise.mean, 1e-6);
  std::printf(
      "  beyond the tile borders' reach (%lld px): max |diff| %.3g (tolerance %.3g), mean %.3g "
      "(tolerance %.3g)\n",
      (long long)pixels, largest, largest_tolerance, mean, mean_tolerance);
  EXPECT_LT(largest, largest_tolerance);
  EXPECT_LT(mean, mean_tolerance);
}

struct WanVaeExport : ::testing::Test {
  static void SetUpTestSuite() {
    if (!fixture_has("wanvae")) return;  // each test skips in SetUp
    weights = new WeightStore(load_wan_vae_weights(fixture("wanvae_weights.safetensors")));
    io = new WeightStore(WeightStore::open(fixture("wanvae_io.safetensors")));
  }
  void SetUp() override { LONGLIVE_REQUIRE_FIXTURE("wanvae"); }
  static void TearDownTestSuite() {
    delete weights;
    delete io;
  }
  static inline WeightStore* weights = nullptr;
  static inline WeightStore* io = nullptr;
};

// Slices of every size give the one-call decode: within the float32 rounding floor against the
// reference, and in float64 against the float64 one-call decode to the output's float32 rounding
// (odd slice sizes and remainders included: the causal caches hand over exactly).
TEST_F(WanVaeExport, SlicesWithoutTilesAreExact) {
  const WanVaeRounding& rounding = fixture_wan_vae_rounding();
  const at::Tensor latents = io->get("latents");
  const at::Tensor expected = (io->get("decode_full")[0] * 0.5 + 0.5).clamp(0, 1);
  const at::Tensor exact = (rounding.exact * 0.5 + 0.5).clamp(0, 1);
  WanVaeDecoder decoder(*weights, {});
  WanVaeDecoder decoder64(*weights, float64_decoder());
  for (int64_t slice : {1, 2, 3, 4}) {
    WanVaeExportOptions options;
    options.slice_latent_frames = slice;
    WanVaeExportPlan plan;
    const at::Tensor frames = export_all(decoder, latents, options, &plan);
    EXPECT_TRUE(plan.exact());
    EXPECT_EQ(plan.slice_latent_frames, slice);
    EXPECT_LT(max_abs_diff(frames, expected), rounding.tolerance()) << "slice " << slice;
    const at::Tensor frames64 = export_all(decoder64, latents, options, &plan);
    EXPECT_LT(max_abs_diff(frames64, exact), 1e-6) << "slice " << slice << ", float64";
  }
}

// Tiles need a frame wider than their overlaps, so tiling is measured on seeded 32x32 latents
// through the fixture's weights. How close the blended overlaps come to the untiled decode depends
// on the weights (how far a tile border's zero padding reaches in before it fades: 45 dB with the
// public width-8 weights, 34 dB with three_switch_odd's width 2, whose 2-channel RMS norms amplify
// small differences, see wan_vae_rounding.h), so what is checked holds for any weights: pixels
// beyond every tile border's reach equal the untiled decode, and widening the overlap from 8 to 12
// latent pixels brings the tiled decode closer by at least 1 dB (3.2 to 4.2 dB measured with
// twelve fixtures' weights of widths 2 to 8).
TEST_F(WanVaeExport, TiledDecodeIsCloseToUntiled) {
  WanVaeDecoder decoder(*weights, {});
  const int64_t n = 32;
  const at::Tensor latents = at::randn({1, 3, 16, n, n}, at::detail::createCPUGenerator(12));
  WanVaeExportOptions untiled;
  untiled.slice_latent_frames = 3;
  WanVaeExportPlan plan;
  const at::Tensor reference = export_all(decoder, latents, untiled, &plan);
  ASSERT_TRUE(plan.exact());
  const Noise noise = rounding_noise(*weights, latents, reference);
  double narrower_db = 0;
  for (int64_t overlap : {8, 12}) {
    WanVaeExportOptions options;
    options.tile_latent = (n + overlap) / 2;  // two tiles per axis
    options.tile_overlap_latent = overlap;
    options.slice_latent_frames = 2;
    const at::Tensor frames = export_all(decoder, latents, options, &plan);
    EXPECT_FALSE(plan.exact());
    ASSERT_EQ(plan.tiles_y * plan.tiles_x, 4);
    const double db = psnr(frames, reference);
    std::printf(
        "Wan VAE tiled (%lldx%lld tiles of %lld latent px, overlap >= %lld, slices of %lld) "
        "vs untiled: PSNR %.2f dB\n",
        (long long)plan.tiles_y, (long long)plan.tiles_x, (long long)plan.tile_h,
        (long long)overlap, (long long)plan.slice_latent_frames, db);
    expect_untouched_beyond_tile_borders(frames, reference, plan, decoder.config(), noise);
    if (narrower_db > 0) {
      EXPECT_GE(db, narrower_db + 1.0) << "a wider overlap did not bring the tiles closer";
    }
    narrower_db = db;
  }
}

TEST_F(WanVaeExport, BudgetIsRespectedOnTheCpuAllocator) {
  WanVaeDecoder decoder(*weights, {});
  const int64_t n = 24, frames = 3, slice = 2;
  const at::Tensor latents = at::randn({1, frames, 16, n, n}, at::detail::createCPUGenerator(11));
  WanVaeExportOptions untiled;
  untiled.slice_latent_frames = slice;
  WanVaeExportPlan plan;
  const at::Tensor reference = export_all(decoder, latents, untiled, &plan);
  ASSERT_TRUE(plan.exact());

  // Tiles fixed by the caller; the budget is what the planner says they need. (On the CPU tile
  // caches cannot be parked elsewhere, so tiling saves memory only on a GPU; see the next test.)
  WanVaeExportOptions budgeted;
  budgeted.slice_latent_frames = slice;
  budgeted.tile_latent = 18;
  budgeted.tile_overlap_latent = 10;
  budgeted.memory_budget_bytes =
      plan_wan_vae_export(decoder.config(), frames, n, n, {}, budgeted).estimated_peak_bytes;
  const int64_t s = decoder.config().spatial_scale();
  at::Tensor tiled = at::empty({decoder.frames_for(frames, true), 3, n * s, n * s});
  int64_t measured = 0;
  {
    int64_t filled = 0;
    CountingCpuAllocator counting;
    plan = decode_wan_vae_video(decoder, latents, budgeted, [&](const at::Tensor& f) {
      tiled.narrow(0, filled, f.size(0)).copy_(f);
      filled += f.size(0);
    });
    measured = counting.peak();
  }
  ASSERT_FALSE(plan.exact());
  const double db = psnr(tiled, reference);
  std::printf(
      "Wan VAE tiled export: budget %.2f MiB, measured peak %.2f MiB (CPU allocator), "
      "tiles %lldx%lld of %lld latent px, PSNR vs untiled %.2f dB\n",
      double(budgeted.memory_budget_bytes) / (1 << 20), double(measured) / (1 << 20),
      (long long)plan.tiles_y, (long long)plan.tiles_x, (long long)plan.tile_h, db);
  EXPECT_LE(measured, budgeted.memory_budget_bytes);
  // The decode under the budget is the tiled decode (see TiledDecodeIsCloseToUntiled).
  expect_untouched_beyond_tile_borders(tiled, reference, plan, decoder.config(),
                                       rounding_noise(*weights, latents, reference));

  // The estimate bounds one untiled pass from above, and not by a silly margin.
  const int64_t untiled_bytes =
      estimate_wan_vae_decode_bytes(decoder.config(), n, n, slice, at::kFloat, false);
  int64_t pass_peak = 0;
  {
    WanVaeDecoder fresh = decoder.fork();
    fresh.decode(latents.narrow(1, 0, 1));
    CountingCpuAllocator counting;
    fresh.decode(latents.narrow(1, 1, slice));
    pass_peak = counting.peak();
  }
  std::printf("one untiled pass of %lld latent frames: estimate %.2f MiB, measured %.2f MiB\n",
              (long long)slice, double(untiled_bytes) / (1 << 20), double(pass_peak) / (1 << 20));
  // ATen's CPU kernels take per-thread scratch, so the peak grows a little with the core count
  // (102.2 MiB on a 16-core machine with the public weights, against 110.0 MiB estimated): allow
  // 10 % over the estimate.
  EXPECT_LE(pass_peak, untiled_bytes + untiled_bytes / 10);
  EXPECT_GE(pass_peak * 3, untiled_bytes);
}

// Planning alone (no GPU needed): a 1-minute 480x832 session in bf16 on a GPU under a budget.
TEST(WanVaeExportPlan, RealSizeOnAGpuFitsTheBudgetByTilingAndParking) {
  const WanVaeConfig config = WanVaeConfig::wan_2_1();
  DecoderOptions gpu;
  gpu.device = at::Device(at::kCUDA, 0);
  gpu.dtype = at::kBFloat16;
  const int64_t frames = 240, h = 60, w = 104;  // 60 s at 16 fps = 960 frames = 240 latents
  WanVaeExportOptions options;
  const WanVaeExportPlan unlimited = plan_wan_vae_export(config, frames, h, w, gpu, options);
  EXPECT_TRUE(unlimited.exact());
  std::printf("real size, bf16, slices of %lld latent frames untiled: %.2f GiB\n",
              (long long)unlimited.slice_latent_frames,
              double(unlimited.estimated_peak_bytes) / (1 << 30));
  for (double gib : {8.0, 4.0, 2.0}) {
    options.memory_budget_bytes = static_cast<int64_t>(gib * (1 << 30));
    const WanVaeExportPlan plan = plan_wan_vae_export(config, frames, h, w, gpu, options);
    std::printf(
        "budget %.0f GiB: %s, slices of %lld, tiles %lldx%lld of %lldx%lld%s, planned "
        "%.2f GiB\n",
        gib, plan.exact() ? "exact" : "tiled", (long long)plan.slice_latent_frames,
        (long long)plan.tiles_y, (long long)plan.tiles_x, (long long)plan.tile_h,
        (long long)plan.tile_w, plan.park_tile_state ? ", caches parked" : "",
        double(plan.estimated_peak_bytes) / (1 << 30));
    EXPECT_LE(plan.estimated_peak_bytes, options.memory_budget_bytes);
  }
  EXPECT_FALSE(plan_wan_vae_export(config, frames, h, w, gpu, options).exact());
}

TEST_F(WanVaeExport, TooSmallABudgetIsAClearError) {
  WanVaeDecoder decoder(*weights, {});
  WanVaeExportOptions options;
  options.memory_budget_bytes = 1024;
  try {
    plan_wan_vae_export(decoder.config(), 9, 8, 8, {}, options);
    FAIL() << "a 1 KiB budget was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("budget"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
