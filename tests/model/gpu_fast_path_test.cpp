// GPU fast paths against the plain ATen path (skipped without CUDA; run on the GPU box by
// packaging/device/build_and_test.sh): fused kernels, attention backends, FP8 linears, and the
// whole streaming loop with every fast path on.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "cache/kv_cache.h"
#include "dit_fixture.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/profiler.h"
#include "longlive/vace.h"
#include "model/ops.h"
#include "runtime/dedicated_stream.h"
#include "runtime/fa3_attention.h"
#include "runtime/fp8_attention.h"
#include "runtime/fused_ops.h"
#include "scoped_env.h"

namespace longlive::test {
namespace {

#define REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU fast paths are tested on the GPU box"

at::TensorOptions cuda(at::ScalarType t) {
  return at::TensorOptions().dtype(t).device(at::Device(at::kCUDA, 0));
}

double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

// The recorded DiT stream fixture: its weights, the recording, its generator options on a device
// and its first prompt (and that prompt reversed, a second prompt to switch to).
struct DitStream {
  WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));

  GeneratorOptions options(at::Device device, at::ScalarType dtype = at::kFloat) const {
    GeneratorOptions o = options_from_stream(stream);
    o.device = device;
    o.dtype = dtype;
    return o;
  }
  at::Tensor prompt_a() const {
    return stream.get("prompt." +
                      metadata_json(stream, "calls")[0].at("prompt").get<std::string>());
  }
  at::Tensor prompt_b() const { return prompt_a().flip(1); }
};

const at::Device kCuda(at::kCUDA, 0);

TEST(FusedKernels, NormModulateWithGatedResidualMatchesPlainOps) {
  REQUIRE_CUDA();
  const int64_t frames = 3, tokens = 40, dim = 1536;
  at::manual_seed(1);
  const at::Tensor x = at::randn({1, frames * tokens, dim}, cuda(at::kFloat));
  const at::Tensor y = at::randn({1, frames * tokens, dim}, cuda(at::kBFloat16));
  const at::Tensor mod = at::randn({1, frames, 6, dim}, cuda(at::kFloat)) * 0.2;
  // The gate comes from another table than shift/scale (as at the head: previous layer's gate).
  const at::Tensor other = at::randn({1, frames, 2, dim}, cuda(at::kFloat)) * 0.2;
  const at::Tensor gate = other.narrow(2, 1, 1), shift = mod.narrow(2, 0, 1),
                   scale = mod.narrow(2, 1, 1);

  const at::Tensor plain_x = ops::gated_residual(x, y, gate, frames);
  const at::Tensor plain = ops::layer_norm_modulate(plain_x, shift, scale, frames, 1e-6);

  const at::Tensor fused_x = x.clone();
  const at::Tensor fused = fused::norm_modulate(
      fused_x, {.residual = &y, .gate = &gate, .shift = &shift, .scale = &scale, .frames = frames},
      1e-6, at::kFloat);
  EXPECT_LT((fused_x - plain_x).abs().max().item<double>(), 1e-5);
  EXPECT_LT((fused - plain).abs().max().item<double>(), 1e-4);

  // bf16 output (what the GEMMs read): within one bf16 rounding of the float result.
  const at::Tensor fused16 = fused::norm_modulate(
      x.clone(),
      {.residual = &y, .gate = &gate, .shift = &shift, .scale = &scale, .frames = frames}, 1e-6,
      at::kBFloat16);
  EXPECT_LT(relative_l2(fused16, plain), 4e-3);
}

// The 16-byte kernel with fewer threads per row (LONGLIVE_NORM_THREADS): the same rows up to the
// order of the row's sums, for the DiT's width, the widest row (2048: 16 values a thread at 128
// threads) and one with a partly idle pass; a count it cannot use falls back to 256.
TEST(FusedKernels, NormModulateGivesTheSameRowsWithAnyThreadCount) {
  REQUIRE_CUDA();
  for (const int64_t dim : {1536, 2048, 1000}) {
    const int64_t frames = 3, tokens = 50;
    at::manual_seed(5);
    const at::Tensor x = at::randn({1, frames * tokens, dim}, cuda(at::kFloat)) * 2 + 0.5;
    const at::Tensor y = at::randn({1, frames * tokens, dim}, cuda(at::kBFloat16));
    const at::Tensor mod = at::randn({1, frames, 3, dim}, cuda(at::kFloat)) * 0.2;
    const at::Tensor gate = mod.narrow(2, 0, 1), shift = mod.narrow(2, 1, 1),
                     scale = mod.narrow(2, 2, 1);
    const fused::NormInputs in{
        .residual = &y, .gate = &gate, .shift = &shift, .scale = &scale, .frames = frames};
    const at::Tensor expected_x = ops::gated_residual(x, y, gate, frames);
    const at::Tensor expected = ops::layer_norm_modulate(expected_x, shift, scale, frames, 1e-6);
    for (const char* threads : {"256", "128", "160", "192", "224", "96", "100", "512"}) {
      const ScopedEnv env("LONGLIVE_NORM_THREADS", threads);
      const std::string where = fmt::format("dim {}, {} threads", dim, threads);
      const at::Tensor updated = x.clone();
      const at::Tensor out = fused::norm_modulate(updated, in, 1e-6, at::kFloat);
      EXPECT_LT((updated - expected_x).abs().max().item<double>(), 1e-5) << where;
      EXPECT_LT((out - expected).abs().max().item<double>(), 1e-4) << where;
      const at::Tensor sixteen = fused::norm_modulate(x.clone(), in, 1e-6, at::kBFloat16);
      EXPECT_LT(relative_l2(sixteen, expected), 4e-3) << where;
    }
  }
}

TEST(FusedKernels, AffineAndPlainLayerNormMatch) {
  REQUIRE_CUDA();
  // 1000: the 16-byte vector kernel with a partly idle last pass; 999: the scalar kernel.
  for (const int64_t dim : {1000, 999}) {
    at::manual_seed(2);
    const at::Tensor x = at::randn({1, 77, dim}, cuda(at::kFloat)) * 3 + 1;
    const at::Tensor w = at::randn({dim}, cuda(at::kFloat));
    const at::Tensor b = at::randn({dim}, cuda(at::kFloat));
    const at::Tensor affine = fused::norm_modulate(x, {.weight = &w, .bias = &b}, 1e-6, at::kFloat);
    EXPECT_LT((affine - ops::layer_norm_affine(x, w, b, 1e-6)).abs().max().item<double>(), 1e-4)
        << dim;
    const at::Tensor plain = fused::norm_modulate(x, {}, 1e-6, at::kFloat);
    EXPECT_LT((plain - ops::layer_norm(x, 1e-6)).abs().max().item<double>(), 1e-4) << dim;
    // Residual without gate, bf16 residual and output.
    const at::Tensor y = at::randn({1, 77, dim}, cuda(at::kBFloat16));
    const at::Tensor updated = x.clone();
    const at::Tensor out = fused::norm_modulate(updated, {.residual = &y, .weight = &w, .bias = &b},
                                                1e-6, at::kBFloat16);
    const at::Tensor expected_x = x + y.to(at::kFloat);
    EXPECT_LT((updated - expected_x).abs().max().item<double>(), 1e-5) << dim;
    EXPECT_LT(relative_l2(out, ops::layer_norm_affine(expected_x, w, b, 1e-6)), 4e-3) << dim;
  }
}

// A VACE hint folded into the norm kernel: x += hint * scale (exactly the two ATen ops' float32
// rounding: product, then sum), then the gated FFN residual, then the LayerNorm; and the kernel
// without the LayerNorm (the VACE chain's settle: x after the adds, cast). Both layouts: 1536
// (16-byte vectors) and 1535 (the scalar kernel); hints in bf16 and float32.
TEST(FusedKernels, NormModulateAddsAHintFirstAndCanSkipTheNorm) {
  REQUIRE_CUDA();
  for (const int64_t dim : {1536, 1535}) {
    for (const at::ScalarType hint_type : {at::kBFloat16, at::kFloat}) {
      const int64_t frames = 3, tokens = 40;
      at::manual_seed(5);
      const at::Tensor x = at::randn({1, frames * tokens, dim}, cuda(at::kFloat));
      const at::Tensor y = at::randn({1, frames * tokens, dim}, cuda(at::kBFloat16));
      const at::Tensor hint = at::randn({frames * tokens, dim}, cuda(hint_type));
      const at::Tensor hint_scale = at::full({1}, 0.7, cuda(at::kFloat));
      const at::Tensor mod = at::randn({1, frames, 6, dim}, cuda(at::kFloat)) * 0.2;
      const at::Tensor gate = mod.narrow(2, 2, 1), shift = mod.narrow(2, 0, 1),
                       scale = mod.narrow(2, 1, 1);
      const std::string where = fmt::format("dim {} hint {}", dim, c10::toString(hint_type));

      // The hint alone, in the plain path's order: bit for bit.
      const at::Tensor hinted = x.clone();
      fused::norm_modulate(hinted, {.hint = &hint, .hint_scale = &hint_scale}, 1e-6, at::kFloat);
      const at::Tensor expected_hinted = x + hint * hint_scale;
      EXPECT_TRUE(at::equal(hinted, expected_hinted)) << where;

      // Hint, then the gated residual, then the modulated norm.
      const at::Tensor fused_x = x.clone();
      const at::Tensor out = fused::norm_modulate(fused_x,
                                                  {.residual = &y,
                                                   .gate = &gate,
                                                   .shift = &shift,
                                                   .scale = &scale,
                                                   .frames = frames,
                                                   .hint = &hint,
                                                   .hint_scale = &hint_scale},
                                                  1e-6, at::kFloat);
      const at::Tensor plain_x = ops::gated_residual(expected_hinted, y, gate, frames);
      EXPECT_LT((fused_x - plain_x).abs().max().item<double>(), 1e-5) << where;
      EXPECT_LT((out - ops::layer_norm_modulate(plain_x, shift, scale, frames, 1e-6))
                    .abs()
                    .max()
                    .item<double>(),
                1e-4)
          << where;

      // No norm: x after the gated residual, and x in bf16.
      const at::Tensor settled = x.clone();
      const at::Tensor cast = fused::norm_modulate(
          settled, {.residual = &y, .gate = &gate, .frames = frames, .normalise = false}, 1e-6,
          at::kBFloat16);
      const at::Tensor expected = ops::gated_residual(x, y, gate, frames);
      EXPECT_LT((settled - expected).abs().max().item<double>(), 1e-5) << where;
      EXPECT_TRUE(at::equal(cast, settled.to(at::kBFloat16))) << where;
      EXPECT_THROW(
          fused::norm_modulate(
              x.clone(), {.shift = &shift, .scale = &scale, .frames = frames, .normalise = false},
              1e-6, at::kFloat),
          ConfigError)
          << "modulation without a norm";
    }
  }
}

// The rows before the norm written beside it (NormInputs::settled: a VACE block's output for its
// hint, by the next block's first norm) are the bits a `normalise = false` call returns, and the
// normalised output does not change; the 16-byte and the scalar kernel (1535), 16-bit and FP8
// output.
TEST(FusedKernels, NormModulateWritesTheSettledRowsAsTheSettlePass) {
  REQUIRE_CUDA();
  for (const int64_t dim : {1536, 1535}) {
    const int64_t frames = 3, tokens = 40;
    at::manual_seed(9);
    const at::Tensor x = at::randn({1, frames * tokens, dim}, cuda(at::kFloat));
    const at::Tensor y = at::randn({1, frames * tokens, dim}, cuda(at::kBFloat16));
    const at::Tensor mod = at::randn({1, frames, 6, dim}, cuda(at::kFloat)) * 0.2;
    const at::Tensor gate = mod.narrow(2, 5, 1), shift = mod.narrow(2, 0, 1),
                     scale = mod.narrow(2, 1, 1);
    const std::string where = fmt::format("dim {}", dim);
    const at::Tensor pass_x = x.clone();
    const at::Tensor pass = fused::norm_modulate(
        pass_x, {.residual = &y, .gate = &gate, .frames = frames, .normalise = false}, 1e-6,
        at::kBFloat16);
    const at::Tensor after_pass = fused::norm_modulate(
        pass_x.clone(), {.shift = &shift, .scale = &scale, .frames = frames}, 1e-6, at::kBFloat16);
    const auto [after_pass8, after_pass8_scales] = fused::norm_modulate_fp8(
        pass_x.clone(), {.shift = &shift, .scale = &scale, .frames = frames}, 1e-6, at::kBFloat16);
    for (const bool fp8 : {false, true}) {
      const at::Tensor merged_x = x.clone();
      const at::Tensor settled = at::full({frames * tokens, dim}, 3.0, cuda(at::kBFloat16));
      const fused::NormInputs in{.residual = &y,
                                 .gate = &gate,
                                 .shift = &shift,
                                 .scale = &scale,
                                 .frames = frames,
                                 .settled = &settled};
      if (fp8) {
        const auto [q, q_scales] = fused::norm_modulate_fp8(merged_x, in, 1e-6, at::kBFloat16);
        EXPECT_TRUE(at::equal(q.view(at::kByte), after_pass8.view(at::kByte))) << where;
        EXPECT_TRUE(at::equal(q_scales, after_pass8_scales)) << where;
      } else {
        EXPECT_TRUE(at::equal(fused::norm_modulate(merged_x, in, 1e-6, at::kBFloat16), after_pass))
            << where;
      }
      EXPECT_TRUE(at::equal(merged_x, pass_x)) << where << " fp8 " << fp8 << ": x updated alike";
      EXPECT_TRUE(at::equal(settled, pass.view({frames * tokens, dim}))) << where << " fp8 " << fp8;
    }
    const at::Tensor wrong = at::empty({frames * tokens, dim}, cuda(at::kFloat));
    EXPECT_THROW(
        fused::norm_modulate(
            x.clone(), {.shift = &shift, .scale = &scale, .frames = frames, .settled = &wrong},
            1e-6, at::kBFloat16),
        ConfigError)
        << "settled in another dtype than the output";
  }
}

TEST(FusedKernels, RmsRopeMatchesRmsNormThenRope) {
  REQUIRE_CUDA();
  const int64_t seq = 96, heads = 12, head_dim = 128, dim = heads * head_dim;
  at::manual_seed(3);
  // A slice of a fused [seq, 3 dim] projection, as the model passes it.
  const at::Tensor qkv = at::randn({seq, 3 * dim}, cuda(at::kBFloat16));
  const at::Tensor in = qkv.narrow(1, dim, dim);
  const at::Tensor weight = (at::rand({dim}, cuda(at::kFloat)) + 0.5).to(at::kBFloat16);
  const at::Tensor angles = at::rand({seq, 1, head_dim / 2}, cuda(at::kFloat)) * 100;
  const at::Tensor cos = angles.cos(), sin = angles.sin();

  const at::Tensor plain =
      ops::apply_rope(ops::rms_norm(in, weight, 1e-6).view({1, seq, heads, head_dim}), cos, sin);
  const at::Tensor out = at::empty({seq, heads, head_dim}, cuda(at::kBFloat16));
  fused::rms_rope(in, weight, cos, sin, out, 1e-6);
  const double max_err = (out.to(at::kFloat) - plain[0].to(at::kFloat)).abs().max().item<double>();
  EXPECT_LT(max_err, 0.02) << "beyond one bf16 rounding of values of order 1";
  EXPECT_LT(relative_l2(out, plain[0]), 2e-3);

  // With the values copied by the same launch into a strided [seq, heads, head_dim] view (as the
  // KV cache's slots are): the keys bit for bit as without, the values unchanged.
  const at::Tensor cache = at::full({2, heads, seq + 8, head_dim}, NAN, cuda(at::kBFloat16));
  const at::Tensor k_slot = cache[0].narrow(1, 4, seq).transpose(0, 1);
  const at::Tensor v_slot = cache[1].narrow(1, 4, seq).transpose(0, 1);
  fused::rms_rope(in, weight, cos, sin, k_slot, 1e-6, qkv.narrow(1, 2 * dim, dim), v_slot);
  EXPECT_TRUE(k_slot.equal(out));
  EXPECT_TRUE(v_slot.equal(qkv.narrow(1, 2 * dim, dim).view({seq, heads, head_dim})));
  EXPECT_TRUE(cache.narrow(2, 0, 4).isnan().all().item<bool>()) << "wrote outside the slots";
  EXPECT_THROW(fused::rms_rope(in, weight, cos, sin, k_slot, 1e-6, qkv.narrow(1, 2 * dim, dim)),
               Error);

  // Without tables: RMSNorm only, into a strided view.
  const at::Tensor wide = at::zeros({seq, heads, 2 * head_dim}, cuda(at::kBFloat16));
  const at::Tensor view = wide.narrow(2, 0, head_dim);
  fused::rms_rope(in, weight, at::Tensor(), at::Tensor(), view, 1e-6);
  EXPECT_LT(relative_l2(view, ops::rms_norm(in, weight, 1e-6).view({seq, heads, head_dim})), 2e-3);
  EXPECT_EQ(wide.narrow(2, head_dim, head_dim).abs().max().item<float>(), 0.f);
}

// The Wan VAE's norm + SiLU before each causal convolution (fused::rms_silu, channels-last):
// ATen's rms_norm then silu, both rounding to 16 bits, for the widths of the released VAE and the
// tiny one, into a causal conv's input buffer (a slice along time) without touching the rest;
// an all-zero pixel stays zero.
TEST(FusedKernels, RmsSiluIsAtenRmsNormThenSilu) {
  REQUIRE_CUDA();
  at::manual_seed(5);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const int64_t channels : {8, 96, 192, 384}) {
      SCOPED_TRACE(fmt::format("{} channels, {}", channels, c10::toString(dtype)));
      const at::Tensor x = (at::randn({1, channels, 3, 10, 14}, cuda(at::kFloat)) * 3)
                               .to(dtype)
                               .contiguous(at::MemoryFormat::ChannelsLast3d);
      x.select(2, 1).select(2, 4).select(2, 5).zero_();  // one pixel of frame 1: all zero
      const at::Tensor gamma = (1 + 0.1 * at::randn({channels}, cuda(at::kFloat))).to(dtype);
      const at::Tensor plain =
          at::silu(at::rms_norm(x.permute({0, 2, 3, 4, 1}), {channels}, gamma, 1e-30))
              .permute({0, 4, 1, 2, 3});
      // The causal conv's buffer: 2 remembered frames, then these 3.
      const at::Tensor buffer = at::full({1, channels, 5, 10, 14}, NAN, cuda(dtype))
                                    .contiguous(at::MemoryFormat::ChannelsLast3d);
      const at::Tensor fresh = buffer.narrow(2, 2, 3);
      fused::rms_silu(x, gamma, 1e-30, fresh);
      const at::Tensor diff = (fresh.to(at::kFloat) - plain.to(at::kFloat)).abs();
      // One 16-bit rounding of the norm (from another summation order) moves a value of order 1
      // by at most 2^-7; the SiLU keeps it within that.
      EXPECT_LT(diff.max().item<double>(), 0.02);
      EXPECT_GT(fresh.eq(plain).to(at::kFloat).mean().item<double>(), 0.98)
          << "nearly every value bit for bit";
      EXPECT_EQ(fresh.select(2, 1).select(2, 4).select(2, 5).abs().max().item<float>(), 0.f);
      EXPECT_TRUE(buffer.narrow(2, 0, 2).isnan().all().item<bool>()) << "wrote outside the slice";
      EXPECT_FALSE(fresh.isnan().any().item<bool>());
    }
  }
  // What it cannot take is refused by name.
  const at::Tensor contiguous = at::randn({1, 96, 3, 4, 4}, cuda(at::kBFloat16));
  EXPECT_FALSE(fused::can_rms_silu(contiguous));
  EXPECT_FALSE(fused::can_bias_residual_add(contiguous));
  EXPECT_THROW(fused::rms_silu(contiguous, at::ones({96}, cuda(at::kBFloat16)), 1e-30,
                               at::empty_like(contiguous)),
               Error);
}

// The same with the producing conv's bias added on load (the Wan VAE's folded biases): as
// ATen's bias add then rms_norm then silu. Channel counts of whole 16-byte vectors take the
// vector kernel (16 threads a row), 12 the warp-a-row one.
TEST(FusedKernels, RmsSiluWithABiasIsAtenAddThenRmsNormThenSilu) {
  REQUIRE_CUDA();
  at::manual_seed(6);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const int64_t channels : {8, 12, 96, 192, 384, 512}) {
      SCOPED_TRACE(fmt::format("{} channels, {}", channels, c10::toString(dtype)));
      const at::Tensor x = (at::randn({1, channels, 3, 10, 14}, cuda(at::kFloat)) * 3)
                               .to(dtype)
                               .contiguous(at::MemoryFormat::ChannelsLast3d);
      const at::Tensor bias = (0.5 * at::randn({channels}, cuda(at::kFloat))).to(dtype);
      const at::Tensor gamma = (1 + 0.1 * at::randn({channels}, cuda(at::kFloat))).to(dtype);
      const at::Tensor biased = x + bias.view({1, channels, 1, 1, 1});
      const at::Tensor plain =
          at::silu(at::rms_norm(biased.permute({0, 2, 3, 4, 1}), {channels}, gamma, 1e-30))
              .permute({0, 4, 1, 2, 3});
      const at::Tensor out = at::empty_like(x);
      fused::rms_silu(x, gamma, 1e-30, out, bias);
      const at::Tensor diff = (out.to(at::kFloat) - plain.to(at::kFloat)).abs();
      EXPECT_LT(diff.max().item<double>(), 0.02);
      EXPECT_GT(out.eq(plain).to(at::kFloat).mean().item<double>(), 0.98)
          << "nearly every value bit for bit";
      // Without the bias, the same kernel gives what it gives on the biased input.
      const at::Tensor unbiased = at::empty_like(x);
      fused::rms_silu(biased.contiguous(at::MemoryFormat::ChannelsLast3d), gamma, 1e-30, unbiased);
      EXPECT_TRUE(at::equal(out, unbiased)) << "the bias added on load, rounded as ATen's add";
    }
  }
}

// The Wan VAE residual block's end after bias-free convs: bit for bit ATen's bias adds and the
// residual add, with and without a shortcut's bias, in place.
TEST(FusedKernels, BiasResidualAddIsAtensAddsBitForBit) {
  REQUIRE_CUDA();
  at::manual_seed(7);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const int64_t channels : {8, 96, 384}) {
      for (const bool shortcut : {false, true}) {
        SCOPED_TRACE(
            fmt::format("{} channels, {}, shortcut {}", channels, c10::toString(dtype), shortcut));
        auto activations = [&] {
          return (at::randn({1, channels, 3, 6, 10}, cuda(at::kFloat)) * 4)
              .to(dtype)
              .contiguous(at::MemoryFormat::ChannelsLast3d);
        };
        const at::Tensor x = activations(), skip = activations();
        const at::Tensor bias = at::randn({channels}, cuda(at::kFloat)).to(dtype);
        const at::Tensor skip_bias =
            shortcut ? at::randn({channels}, cuda(at::kFloat)).to(dtype) : at::Tensor();
        const std::vector<int64_t> shape{1, channels, 1, 1, 1};
        const at::Tensor expected =
            (x + bias.view(shape)).add_(shortcut ? skip + skip_bias.view(shape) : skip);
        const at::Tensor out = x.clone(at::MemoryFormat::ChannelsLast3d);
        fused::bias_residual_add(out, bias, skip, skip_bias);
        EXPECT_TRUE(at::equal(out, expected));
      }
    }
  }
  const at::Tensor odd =
      at::randn({1, 12, 2, 4, 4}, cuda(at::kBFloat16)).contiguous(at::MemoryFormat::ChannelsLast3d);
  EXPECT_FALSE(fused::can_bias_residual_add(odd)) << "12 channels: not whole 16-byte vectors";
  EXPECT_THROW(fused::bias_residual_add(odd, at::zeros({12}, cuda(at::kBFloat16)), odd), Error);
}

// An FP8 KV cache's slots written by the RMSNorm+RoPE launch itself (KvCache::set_fp8_direct):
// the same bytes as KvCache::write() stores for the bf16 keys and values (saturated at +-448,
// scale 1), with values beyond E4M3's range among them.
TEST(FusedKernels, RmsRopeWritesFp8SlotsAsTheCacheWouldStoreThem) {
  REQUIRE_CUDA();
  const int64_t frames = 2, tokens = 48, heads = 12, head_dim = 128, dim = heads * head_dim;
  const int64_t seq = frames * tokens;
  at::manual_seed(4);
  const at::Tensor qkv = at::randn({seq, 3 * dim}, cuda(at::kBFloat16)) * 200;  // some > 448
  const at::Tensor in = qkv.narrow(1, dim, dim), values = qkv.narrow(1, 2 * dim, dim);
  // RMSNorm leaves unit RMS: the norm weight takes some keys past E4M3's 448 (saturation).
  at::Tensor weight = at::rand({dim}, cuda(at::kFloat)) * 4 + 0.5;
  weight.narrow(0, 0, head_dim).mul_(200);
  weight = weight.to(at::kBFloat16);
  const at::Tensor angles = at::rand({seq, 1, head_dim / 2}, cuda(at::kFloat)) * 100;
  const at::Tensor cos = angles.cos(), sin = angles.sin();
  const KvCacheShape shape{.layers = 2,
                           .heads = heads,
                           .head_dim = head_dim,
                           .tokens_per_frame = tokens,
                           .sink_frames = 1,
                           .window_frames = 4};
  const auto bf16 = cuda(at::kBFloat16);
  KvCache written(shape, bf16, at::kFloat8_e4m3fn), direct(shape, bf16, at::kFloat8_e4m3fn);
  direct.set_fp8_direct(true);
  written.set_fp8_direct(false);
  const KvCache::Plan plan = written.plan(1, frames, KvWriteKind::block, true);
  ASSERT_FALSE(written.destination(1, plan, frames, false).defined()) << "FP8: not by default";
  const at::Tensor k_slot = direct.destination(1, plan, frames, false);
  const at::Tensor v_slot = direct.destination(1, plan, frames, true);
  ASSERT_TRUE(k_slot.defined() && v_slot.defined());
  EXPECT_EQ(k_slot.scalar_type(), at::kFloat8_e4m3fn);

  const at::Tensor k16 = at::empty({seq, heads, head_dim}, bf16);
  fused::rms_rope(in, weight, cos, sin, k16, 1e-6);
  ASSERT_GT(k16.abs().max().item<float>(), 448) << "the keys reach past E4M3's range";
  written.write(1, plan, k16.unsqueeze(0).transpose(1, 2),
                values.reshape({1, seq, heads, head_dim}).transpose(1, 2), frames);
  fused::rms_rope(in, weight, cos, sin, k_slot, 1e-6, values, v_slot);
  auto bytes = [](const at::Tensor& fp8) { return fp8.view(at::kByte); };
  EXPECT_TRUE(bytes(written.stored_keys(1, plan)).equal(bytes(direct.stored_keys(1, plan))));
  EXPECT_TRUE(bytes(written.stored_values(1, plan)).equal(bytes(direct.stored_values(1, plan))));
}

// The thread-block-per-row kernels while this lives.
struct BlockRowKernels : ScopedEnv {
  BlockRowKernels() : ScopedEnv("LONGLIVE_ROW_KERNELS", "block") {}
};

// Largest difference in units of a type's rounding step at each element's magnitude (relative
// `epsilon`, never below `smallest`: the subnormal step).
double max_ulps(const at::Tensor& a, const at::Tensor& b, double epsilon, double smallest) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  const at::Tensor step = at::clamp_min(y.abs() * epsilon, smallest);
  return ((x - y).abs() / step).max().item<double>();
}

// RMSNorm+RoPE a warp per row (the default) against a thread block per row: the same
// arithmetic per element, the row's sum of squares in another order, so within one rounding
// step of the output type, at the model's width and a wider one (the larger register layout),
// into strided cache-like views (bf16 and FP8 slots), with and without the rotation (the
// cross-attention's q); the values copied beside the keys bit for bit.
TEST(FusedKernels, RmsRopeWarpPerRowMatchesBlockPerRow) {
  REQUIRE_CUDA();
  const double bf16_step = 1.0 / 128;  // bf16: 8 significant bits
  for (const int64_t heads : {12, 16}) {
    const int64_t seq = 75, head_dim = 128, dim = heads * head_dim;
    at::manual_seed(8);
    const at::Tensor qkv = at::randn({seq, 3 * dim}, cuda(at::kBFloat16)) * 3;
    const at::Tensor in = qkv.narrow(1, dim, dim), values = qkv.narrow(1, 2 * dim, dim);
    const at::Tensor weight = (at::rand({dim}, cuda(at::kFloat)) + 0.5).to(at::kBFloat16);
    const at::Tensor angles = at::rand({seq, 1, head_dim / 2}, cuda(at::kFloat)) * 100;
    const at::Tensor cos = angles.cos(), sin = angles.sin();
    for (const auto type : {at::kBFloat16, at::kFloat8_e4m3fn}) {
      auto run = [&](bool rotate) {
        const at::Tensor cache = at::zeros({2, heads, seq + 8, head_dim}, cuda(type));
        const at::Tensor k = cache[0].narrow(1, 4, seq).transpose(0, 1);
        const at::Tensor v = cache[1].narrow(1, 4, seq).transpose(0, 1);
        fused::rms_rope(in, weight, rotate ? cos : at::Tensor(), rotate ? sin : at::Tensor(), k,
                        1e-6, values, v);
        return cache.to(at::kFloat);
      };
      for (const bool rotate : {true, false}) {
        const at::Tensor warp = run(rotate);
        const at::Tensor block = [&] {
          const BlockRowKernels old;
          return run(rotate);
        }();
        // FP8 (3 mantissa bits) is compared by its own step: a bf16 step apart can cross one.
        // Values near zero get the step of values of order 1 (the rows' RMS): a one-step
        // difference before the rotation stays that large after it, whatever the result's size.
        const bool fp8 = type == at::kFloat8_e4m3fn;
        const double step = fp8 ? 1.0 / 8 : bf16_step;
        EXPECT_LE(max_ulps(warp, block, step, 2 * step), 1.0)
            << heads << " heads, rotate " << rotate;
        EXPECT_TRUE(warp[1].equal(block[1])) << "the values are copied, not computed";
      }
    }
  }
}

TEST(FusedKernels, BadArgumentsAreRejectedWithTheirName) {
  REQUIRE_CUDA();
  const at::Tensor x = at::randn({1, 8, 64}, cuda(at::kBFloat16));
  try {
    fused::norm_modulate(x, {}, 1e-6, at::kBFloat16);
    FAIL() << "bf16 residual stream accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos) << e.what();
  }
}

TEST(FusedKernels, Int8DequantizeIsBitExactWithTheAtenPath) {
  REQUIRE_CUDA();
  at::manual_seed(7);
  // A [H, T, D] prefix of a [H, T_total, D] cache buffer, as KvCache::load reads it.
  const at::Tensor buffer = at::randint(-127, 128, {12, 300, 128}, cuda(at::kChar));
  const at::Tensor scales = at::rand({12, 300, 1}, cuda(at::kFloat)) * 0.05;
  const at::Tensor q = buffer.narrow(1, 0, 250);
  const at::Tensor s = scales.narrow(1, 0, 250);
  ASSERT_TRUE(fused::can_dequantize_int8(q, s, at::kBFloat16));
  const at::Tensor fast = fused::dequantize_int8(q, s, at::kBFloat16);
  const at::Tensor plain = (q.to(at::kFloat) * s).to(at::kBFloat16);
  EXPECT_TRUE(fast.equal(plain));
  EXPECT_TRUE(fast.is_contiguous());
  EXPECT_FALSE(fused::can_dequantize_int8(q.narrow(2, 0, 120), s, at::kBFloat16)) << "D % 16";
}

TEST(AttentionBackends, CudnnFlashAndMathAgree) {
  REQUIRE_CUDA();
  at::manual_seed(4);
  const at::Tensor q = at::randn({1, 1560, 12, 128}, cuda(at::kBFloat16)).transpose(1, 2);
  const at::Tensor k = at::randn({1, 12, 4680, 128}, cuda(at::kBFloat16));
  const at::Tensor v = at::randn({1, 12, 4680, 128}, cuda(at::kBFloat16));
  const at::Tensor reference =
      ops::attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), AttentionBackend::math);
  for (auto backend : {AttentionBackend::automatic, AttentionBackend::cudnn,
                       AttentionBackend::flash, AttentionBackend::efficient}) {
    const at::Tensor out = ops::attention(q, k, v, backend);
    EXPECT_LT(relative_l2(out, reference), 1e-2) << to_string(backend);
  }
}

TEST(Fp8Linear, CloseToTheBf16Linear) {
  REQUIRE_CUDA();
  at::manual_seed(5);
  const at::Tensor x = at::randn({4680, 1536}, cuda(at::kBFloat16));
  const at::Tensor w = (at::randn({8960, 1536}, cuda(at::kFloat)) / std::sqrt(1536.0));
  const at::Tensor b = at::randn({8960}, cuda(at::kBFloat16)) * 0.1;
  const at::Tensor reference = ops::linear(x, w.to(at::kBFloat16), b);
  const at::Tensor out = ops::linear_fp8(x, ops::quantize_weight_fp8(w), b, at::kBFloat16);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LT(relative_l2(out, reference), 0.06) << "e4m3 keeps 3 mantissa bits";
}

// The FFN's second FP8 GEMM quantises GELU(x) in one pass: same as GELU, then quantise. Both
// formulas (tanhf as ATen; the logistic form, the default), on values that reach GELU's far tails
// (down to -40, where 1 + e^(-2u) overflows and the logistic form divides by infinity).
TEST(Fp8Linear, GeluInsideTheQuantisationMatchesGeluThenLinear) {
  REQUIRE_CUDA();
  for (const fused::GeluFormula formula :
       {fused::GeluFormula::tanh, fused::GeluFormula::logistic}) {
    const std::string where =
        formula == fused::GeluFormula::tanh ? "tanh formula" : "logistic formula";
    at::manual_seed(9);
    at::Tensor x = at::randn({96, 512}, cuda(at::kBFloat16)) * 2;
    x[3] = at::linspace(-40, 40, 512, cuda(at::kBFloat16));
    const at::Tensor separate_input = ops::gelu_tanh(x).contiguous();
    const auto [q_fused, s_fused] = fused::quantize_fp8_rows(x, /*gelu_tanh=*/true, {}, formula);
    const auto [q_sep, s_sep] = fused::quantize_fp8_rows(separate_input);
    EXPECT_LT((s_fused - s_sep).abs().max().item<double>(), 1e-6) << where;
    const double mismatched =
        q_fused.view(at::kByte).ne(q_sep.view(at::kByte)).to(at::kFloat).mean().item<double>();
    EXPECT_LT(mismatched, 1e-3) << where << ": share of FP8 codes that differ";
    // Where they differ, by one FP8 step at most: dequantised, within an eighth of the value
    // (e4m3 has 3 mantissa bits) plus the smallest subnormal step of the row.
    const at::Tensor fused_values = q_fused.to(at::kFloat) * s_fused;
    const at::Tensor separate_values = q_sep.to(at::kFloat) * s_sep;
    const at::Tensor allowed = separate_values.abs() / 8 + s_sep * 0.002;
    EXPECT_TRUE((fused_values - separate_values).abs().le(allowed).all().item<bool>()) << where;
  }
  at::manual_seed(9);
  const at::Tensor x = at::randn({96, 512}, cuda(at::kBFloat16)) * 2;
  const ops::Fp8Weight w = ops::quantize_weight_fp8(at::randn({64, 512}, cuda(at::kBFloat16)));
  const at::Tensor b = at::randn({64}, cuda(at::kBFloat16));
  const at::Tensor fused = ops::linear_fp8(x, w, b, at::kBFloat16, /*gelu_input=*/true);
  const at::Tensor separate = ops::linear_fp8(ops::gelu_tanh(x), w, b, at::kBFloat16);
  // Same bf16 GELU values up to their last bit, so at most a rare one-step FP8 rounding flip.
  EXPECT_LT(relative_l2(fused, separate), 2e-3);
}

// The quantisation kernel that keeps the row in registers (LONGLIVE_FP8_QUANT_KERNEL=vector)
// against the first one: the same codes and scales bit for bit, with and without the GELU (each
// formula), for
// the FFN's width (8960: five chunks a thread), the hidden size (1536), a width of an odd chunk
// count, one past the vector kernel's limit and one that is not a multiple of 8 (both run the
// first kernel), with an all-zero row (the 1e-12 scale floor).
TEST(Fp8Linear, VectorQuantisationKernelIsBitExactWithTheFirst) {
  REQUIRE_CUDA();
  for (const int64_t dim : {8960, 1536, 1544, 16392, 100}) {
    for (const at::ScalarType type : {at::kBFloat16, at::kHalf}) {
      for (const int gelu : {0, 1, 2}) {  // none, tanh formula, logistic formula
        at::manual_seed(12);
        const at::Tensor x = at::randn({37, dim}, cuda(type)) * 3;
        x[5].zero_();
        const std::string where = fmt::format("dim {} {} gelu {}", dim, c10::toString(type), gelu);
        const fused::GeluFormula formula =
            gelu == 1 ? fused::GeluFormula::tanh : fused::GeluFormula::logistic;
        const auto [q_vector, s_vector] = fused::quantize_fp8_rows(x, gelu != 0, true, formula);
        const auto [q_first, s_first] = fused::quantize_fp8_rows(x, gelu != 0, false, formula);
        EXPECT_TRUE(at::equal(s_vector, s_first)) << where << ": row scales";
        EXPECT_TRUE(at::equal(q_vector.view(at::kByte), q_first.view(at::kByte)))
            << where << ": FP8 codes";
      }
    }
  }
}

// The LayerNorm kernel's FP8 output (what the QKV, cross-q and FFN FP8 GEMMs read) against its
// 16-bit output quantised by the separate pass: the same codes and scales, bit for bit, and the
// same GEMM result. 1536: the 16-byte vector kernel; 1535: the scalar one. Modulated with a
// gated residual and a hint (the layer's first norm after a VACE layer), affine with a residual
// (cross-attention's norm); bf16 and f16 rounding.
TEST(Fp8Linear, NormKernelQuantisesItsOutputAsTheSeparatePassWould) {
  REQUIRE_CUDA();
  for (const int64_t dim : {1536, 1535}) {
    for (const at::ScalarType round : {at::kBFloat16, at::kHalf}) {
      const int64_t frames = 3, tokens = 40;
      at::manual_seed(11);
      const at::Tensor x = at::randn({1, frames * tokens, dim}, cuda(at::kFloat)) * 2;
      const at::Tensor y = at::randn({1, frames * tokens, dim}, cuda(round));
      const at::Tensor hint = at::randn({frames * tokens, dim}, cuda(at::kBFloat16));
      const at::Tensor hint_scale = at::full({1}, 0.5, cuda(at::kFloat));
      const at::Tensor mod = at::randn({1, frames, 6, dim}, cuda(at::kFloat)) * 0.3;
      const at::Tensor gate = mod.narrow(2, 2, 1), shift = mod.narrow(2, 0, 1),
                       scale = mod.narrow(2, 1, 1);
      const at::Tensor w = at::randn({dim}, cuda(at::kFloat)),
                       b = at::randn({dim}, cuda(at::kFloat));
      const std::vector<std::pair<const char*, fused::NormInputs>> cases = {
          {"modulated",
           {.residual = &y,
            .gate = &gate,
            .shift = &shift,
            .scale = &scale,
            .frames = frames,
            .hint = &hint,
            .hint_scale = &hint_scale}},
          {"affine", {.residual = &y, .weight = &w, .bias = &b, .frames = frames}}};
      for (const auto& [name, in] : cases) {
        const std::string where = fmt::format("dim {} {} {}", dim, c10::toString(round), name);
        const at::Tensor x_fp8 = x.clone(), x_pass = x.clone();
        const auto [q, scales] = fused::norm_modulate_fp8(x_fp8, in, 1e-6, round);
        const at::Tensor sixteen = fused::norm_modulate(x_pass, in, 1e-6, round);
        const auto [q_pass, scales_pass] = fused::quantize_fp8_rows(sixteen.reshape({-1, dim}));
        EXPECT_TRUE(at::equal(x_fp8, x_pass)) << where << ": the residual stream";
        ASSERT_EQ(q.scalar_type(), at::kFloat8_e4m3fn) << where;
        EXPECT_TRUE(at::equal(scales, scales_pass)) << where << ": row scales";
        EXPECT_TRUE(at::equal(q.view(at::kByte).reshape({-1, dim}), q_pass.view(at::kByte)))
            << where << ": FP8 codes";
        if (dim % 16 == 0) {  // _scaled_mm's K
          const ops::Fp8Weight weight = ops::quantize_weight_fp8(at::randn({64, dim}, cuda(round)));
          const at::Tensor bias = at::randn({64}, cuda(round));
          EXPECT_TRUE(at::equal(ops::linear_fp8_quantized(q, scales, weight, bias, round),
                                ops::linear_fp8(sixteen, weight, bias, round)))
              << where << ": the GEMM";
        }
      }
      EXPECT_THROW(
          fused::norm_modulate_fp8(x.clone(), {.residual = &y, .normalise = false}, 1e-6, round),
          ConfigError)
          << "FP8 output without the norm";
    }
  }
  const at::Tensor x = at::randn({1, 8, 64}, cuda(at::kFloat));
  EXPECT_THROW(fused::norm_modulate_fp8(x, {}, 1e-6, at::kFloat), ConfigError)
      << "rounding through float32";
}

TEST(LinearGelu, EpilogueMatchesLinearThenGelu) {
  REQUIRE_CUDA();
  at::manual_seed(6);
  const at::Tensor x = at::randn({1, 300, 256}, cuda(at::kBFloat16));
  const at::Tensor w = at::randn({512, 256}, cuda(at::kBFloat16)) / 16;
  const at::Tensor b = at::randn({512}, cuda(at::kBFloat16));
  const at::Tensor plain = ops::gelu_tanh(ops::linear(x, w, b));
  EXPECT_LT(relative_l2(ops::linear_gelu_tanh(x, w, b), plain), 1e-2);
}

// cuDNN's FP8 attention against bf16 attention on the same (E4M3-representable) values, with q
// in the DiT's BSHD layout and k/v narrowed out of a larger buffer like the KV cache's.
TEST(Fp8Attention, CloseToBf16AttentionOnTheSameValues) {
  REQUIRE_CUDA();
  if (!fp8_attention::available())
    GTEST_SKIP() << "no cudnn-frontend in this build, or the GPU is older than Hopper";
  at::manual_seed(8);
  const int64_t heads = 12, d = 128, sq = 640, sk = 1920;
  const at::Tensor q = fp8_attention::quantize(
      at::randn({sq, heads, d}, cuda(at::kBFloat16)).unsqueeze(0).transpose(1, 2));
  const at::Tensor k_buffer =
      fp8_attention::quantize(at::randn({1, heads, sk + 320, d}, cuda(at::kBFloat16)));
  const at::Tensor v_buffer =
      fp8_attention::quantize(at::randn({1, heads, sk + 320, d}, cuda(at::kBFloat16)));
  const at::Tensor k = k_buffer.narrow(2, 0, sk), v = v_buffer.narrow(2, 0, sk);
  const at::Tensor out = fp8_attention::attention(q, k, v);
  ASSERT_EQ(out.sizes(), q.sizes());
  EXPECT_EQ(out.scalar_type(), at::kFloat8_e4m3fn);
  const at::Tensor reference = at::scaled_dot_product_attention(
      q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16));
  const double error = relative_l2(out.to(at::kFloat), reference);
  std::cout << "[ drift    ] fp8 attention vs bf16 on the same values: relative L2 " << error
            << "\n";
  EXPECT_LT(error, 0.08) << "E4M3 output rounding is ~4 % relative L2";
  // Bad input is named.
  EXPECT_THROW(fp8_attention::attention(q.to(at::kBFloat16), k, v), ConfigError);
}

// The whole streaming loop (fixture weights, a prompt switch) with every fast path on against
// the plain bf16 path: same shapes, bounded drift, finite.
TEST(FastPathStream, FusedAndFp8LoopsStayCloseToThePlainLoop) {
  REQUIRE_CUDA();
  const DitStream dit;
  const WeightStore& weights = dit.weights;
  GeneratorOptions plain = dit.options(kCuda, at::kBFloat16);
  const at::Tensor prompt_a = dit.prompt_a(), prompt_b = dit.prompt_b();
  auto run = [&](const GeneratorOptions& o, bool expect_fused) {
    StreamGenerator g(weights, o);
    g.start(prompt_a, 3);
    std::vector<at::Tensor> out;
    for (int i = 0; i < 6; ++i) {
      if (i == 3) g.switch_prompt(prompt_b);
      out.push_back(g.next_block().to(at::kCPU));
    }
    EXPECT_EQ(g.fused_kernels_active(), expect_fused);
    EXPECT_EQ(g.fp8_linears_active(), o.runtime.fp8_linears);
    return at::cat(out, 1);
  };
  const at::Tensor reference = run(plain, false);
  ASSERT_TRUE(reference.isfinite().all().item<bool>());

  GeneratorOptions fused = plain;
  fused.runtime.fused_kernels = true;
  const at::Tensor fast = run(fused, true);
  EXPECT_TRUE(fast.isfinite().all().item<bool>());
  EXPECT_LT(relative_l2(fast, reference), 0.02) << "fused kernels drift beyond bf16 rounding";

  GeneratorOptions fp8 = fused;
  fp8.runtime.fp8_linears = true;
  const at::Tensor fp8_out = run(fp8, true);
  EXPECT_TRUE(fp8_out.isfinite().all().item<bool>());
  const double fp8_drift = relative_l2(fp8_out, reference);
  std::cout << "[ drift    ] fused " << relative_l2(fast, reference) << ", fp8 " << fp8_drift
            << " (relative L2 over 6 blocks vs plain bf16)\n";
  EXPECT_LT(fp8_drift, 0.3);
  // The LayerNorm kernel writing the FP8 GEMMs' inputs quantised (the default) or a separate
  // quantisation pass after it (LONGLIVE_FP8_NORM_QUANT=0): the same bits, so the same video.
  const at::Tensor separate_quantisation = [&] {
    const ScopedEnv off("LONGLIVE_FP8_NORM_QUANT", "0");
    return run(fp8, true);
  }();
  EXPECT_TRUE(separate_quantisation.equal(fp8_out)) << "FP8 inputs from the norm kernel vs a pass";
  // The attention output projections in FP8 too (LONGLIVE_FP8_OUT_PROJECTIONS=1, read when the
  // DiT is built): other bits, within the same bound.
  const at::Tensor fp8_out_projections = [&] {
    const ScopedEnv on("LONGLIVE_FP8_OUT_PROJECTIONS", "1");
    return run(fp8, true);
  }();
  const double out_projections_drift = relative_l2(fp8_out_projections, reference);
  std::cout << "[ drift    ] fp8 with the output projections in FP8 too " << out_projections_drift
            << "\n";
  EXPECT_FALSE(fp8_out_projections.equal(fp8_out)) << "the toggle changed nothing";
  EXPECT_LT(out_projections_drift, 0.3);

  GeneratorOptions with_attention = fp8;
  with_attention.runtime.fp8_attention = true;
  if (fp8_attention::available()) {
    EXPECT_TRUE(StreamGenerator(weights, with_attention).fp8_attention_active());
    const at::Tensor attn_out = run(with_attention, true);
    EXPECT_TRUE(attn_out.isfinite().all().item<bool>());
    const double attn_drift = relative_l2(attn_out, reference);
    std::cout << "[ drift    ] fp8 linears + fp8 attention " << attn_drift
              << " (relative L2 over 6 blocks vs plain bf16)\n";
    EXPECT_LT(attn_drift, 0.4);
    // The FP8 cache's K/V written by the RMSNorm+RoPE launch (the default) or by write()
    // (LONGLIVE_FP8_KV_DIRECT=0, read when the generator makes its cache): the same bytes, so
    // the same video bit for bit.
    const at::Tensor written_out = [&] {
      const ScopedEnv by_write("LONGLIVE_FP8_KV_DIRECT", "0");
      return run(with_attention, true);
    }();
    EXPECT_TRUE(written_out.equal(attn_out)) << "FP8 K/V written directly vs by write()";
  }
}

// The streams graph captures, the decoder and the encode-ahead thread run on are their own:
// LibTorch's pool hands each of its streams out again and again (round-robin), and a capture on a
// stream another thread launches on fails (bench --vace, H100, 2026-12-05).
TEST(DedicatedStream, NeverOneOfThePoolsStreams) {
#ifdef LONGLIVE_WITH_CUDA
  REQUIRE_CUDA();
  const DedicatedStream low(0, false), high(0, true);
  EXPECT_NE(low.get(), high.get());
  for (int i = 0; i < 128; ++i) {  // every pool stream of both priorities, several times over
    const c10::cuda::CUDAStream pooled = c10::cuda::getStreamFromPool(i % 2 == 0, 0);
    EXPECT_NE(pooled, low.get());
    EXPECT_NE(pooled, high.get());
  }
  // Work on it is ordinary stream work.
  at::Tensor x;
  {
    const c10::cuda::CUDAStreamGuard on(low.get());
    x = at::ones({1024}, cuda(at::kFloat)) * 3;
  }
  low.get().synchronize();
  EXPECT_EQ(x.sum().item<float>(), 3072.0f);
  // A device without an index ("cuda") is the current one.
  const DedicatedStream current(-1, false);
  EXPECT_EQ(current.get().device_index(), c10::cuda::current_device());
#else
  GTEST_SKIP() << "a build without CUDA";
#endif
}

// A tensor used on a DedicatedStream (recordStream) may be freed after the stream's owner is
// gone: the allocator then records an event on that stream, which must still exist (on a
// destroyed stream this failed inside the tensor's destructor and ended the process: the faults
// test on the H100, 2026-12-05). And two owners alive at once never share a stream.
TEST(DedicatedStream, OutlivesItsOwnerForTensorsUsedOnIt) {
#ifdef LONGLIVE_WITH_CUDA
  REQUIRE_CUDA();
  at::Tensor used;
  cudaStream_t raw = nullptr;
  {
    const DedicatedStream owner(0, true);
    raw = owner.get().stream();
    used = at::ones({1 << 20}, cuda(at::kFloat));
    const c10::cuda::CUDAStreamGuard on(owner.get());
    used.mul_(2);
    c10::cuda::CUDACachingAllocator::recordStream(used.storage().data_ptr(), owner.get());
  }
  EXPECT_NO_THROW(used = at::Tensor()) << "freed after its stream's owner";
  EXPECT_EQ(cudaStreamQuery(raw), cudaSuccess) << "the stream still exists";
  const DedicatedStream a(0, true), b(0, true);
  EXPECT_NE(a.get(), b.get());
#else
  GTEST_SKIP() << "a build without CUDA";
#endif
}

// CUDA graphs replay exactly what the eager forward computes: a session with warm-up, steady
// ring phases, hard cuts (re-cache forwards) and a transition, for each fast-path combination.
TEST(CudaGraphs, GraphPathIsIdenticalToTheEagerPath) {
  REQUIRE_CUDA();
  const DitStream dit;
  const WeightStore& weights = dit.weights;
  GeneratorOptions base = dit.options(kCuda, at::kBFloat16);
  const at::Tensor prompt_a = dit.prompt_a(), prompt_b = dit.prompt_b();
  auto run = [&](const GeneratorOptions& o, GeneratorStats* stats) {
    StreamGenerator g(weights, o);
    EXPECT_EQ(g.cuda_graphs_active(), o.runtime.cuda_graphs);
    g.start(prompt_a, 5);
    std::vector<at::Tensor> out;
    for (int i = 0; i < 16; ++i) {
      if (i == 5 || i == 8 || i == 11) g.switch_prompt(i == 8 ? prompt_a : prompt_b);
      if (i == 13) g.transition_to(prompt_a, {.blocks = 2});
      out.push_back(g.next_block().to(at::kCPU));
    }
    if (stats) *stats = g.stats();
    return at::cat(out, 1);
  };
  struct Variant {
    const char* name;
    bool fused, fp8, int8_kv;
  };
  for (const Variant v :
       {Variant{"plain", false, false, false}, Variant{"fused", true, false, false},
        Variant{"fused+fp8 linears+fp8 attention", true, true, false},
        Variant{"fused+int8 kv", true, false, true}}) {
    GeneratorOptions eager = base;
    eager.runtime.fused_kernels = v.fused;
    eager.runtime.fp8_linears = v.fp8;
    eager.runtime.fp8_attention = v.fp8;
    if (v.int8_kv) eager.kv_dtype = at::kChar;
    GeneratorOptions graphs = eager;
    graphs.runtime.cuda_graphs = true;
    const at::Tensor reference = run(eager, nullptr);
    GeneratorStats stats;
    const at::Tensor replayed = run(graphs, &stats);
    ASSERT_TRUE(reference.isfinite().all().item<bool>()) << v.name;
    const double max_diff = (replayed - reference).abs().max().item<double>();
    std::cout << "[ graphs   ] " << v.name << ": " << stats.graph_captures << " captured, "
              << stats.graph_replays << " replays, " << stats.graph_eager_forwards
              << " eager; max |graph - eager| = " << max_diff << "\n";
    EXPECT_EQ(max_diff, 0.0) << v.name;
    EXPECT_GT(stats.graph_captures, 0) << v.name;
    // Most forwards replay: 16 blocks x (steps + context pass) + re-caches.
    EXPECT_GT(stats.graph_replays, stats.graph_eager_forwards) << v.name;
  }

  // memory_pool: the steady plans are warmed and captured at start(); same latents.
  GeneratorOptions eager = base;
  eager.runtime.fused_kernels = true;
  GeneratorOptions reserved = eager;
  reserved.runtime.cuda_graphs = true;
  reserved.reserve_up_front = true;
  {
    StreamGenerator g(weights, reserved);
    g.start(prompt_a, 5);
    EXPECT_GT(g.stats().reserve_ms, 0);
    EXPECT_GT(g.stats().graph_captures, 0) << "start() captured the steady plans";
    const int64_t captured_at_start = g.stats().graph_captures;
    for (int i = 0; i < 8; ++i) g.next_block();
    EXPECT_EQ(g.stats().graph_captures, captured_at_start) << "no capture while streaming";
  }
  GeneratorStats stats;
  const at::Tensor with_reserve = run(reserved, &stats);
  EXPECT_EQ((with_reserve - run(eager, nullptr)).abs().max().item<double>(), 0.0);
}

// While a RegionProfiler times regions, forwards run eagerly (a graph would hide the regions);
// replays resume afterwards.
TEST(CudaGraphs, ProfiledBlocksRunEagerly) {
  REQUIRE_CUDA();
  const DitStream dit;
  const WeightStore& weights = dit.weights;
  GeneratorOptions o = dit.options(kCuda, at::kBFloat16);
  o.runtime.fused_kernels = true;
  o.runtime.cuda_graphs = true;
  StreamGenerator g(weights, o);
  g.start(at::randn({1, 8, o.model.text_dim}), 1);
  for (int i = 0; i < 8; ++i) g.next_block();
  const GeneratorStats before = g.stats();
  RegionProfiler profiler(o.device);
  profiler.activate();
  g.next_block();
  const RegionTimes times = profiler.collect();
  profiler.deactivate();
  const GeneratorStats profiled = g.stats();
  EXPECT_EQ(profiled.graph_replays, before.graph_replays);
  EXPECT_EQ(profiled.graph_eager_forwards,
            before.graph_eager_forwards + static_cast<int64_t>(o.denoising_steps.size()) + 1);
  EXPECT_TRUE(times.ms.count("self_attention"));
  g.next_block();
  EXPECT_GT(g.stats().graph_replays, profiled.graph_replays);
}

// On the CPU the flag is accepted and ignored (nothing to capture).
TEST(CudaGraphs, IgnoredOnTheCpu) {
  const DitStream dit;
  const WeightStore& weights = dit.weights;
  GeneratorOptions o = dit.options(at::kCPU);
  o.runtime.cuda_graphs = true;
  StreamGenerator g(weights, o);
  EXPECT_FALSE(g.cuda_graphs_active());
  g.start(at::randn({1, 8, o.model.text_dim}), 1);
  g.next_block();
  EXPECT_EQ(g.stats().graph_replays, 0);
  EXPECT_EQ(g.stats().graph_captures, 0);
  // The up-front reservation is a CUDA thing too.
  o.reserve_up_front = true;
  StreamGenerator reserved(weights, o);
  reserved.start(at::randn({1, 8, o.model.text_dim}), 1);
  EXPECT_EQ(reserved.stats().reserve_ms, 0);
}

TEST(RegionProfiler, CollectsNamedRegionsOfAForward) {
  const at::Device device = at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const DitStream dit;
  const WeightStore& weights = dit.weights;
  GeneratorOptions o = dit.options(device);
  StreamGenerator g(weights, o);
  g.start(at::randn({1, 8, o.model.text_dim}), 1);
  RegionProfiler profiler(device);
  profiler.activate();
  g.next_block();
  const RegionTimes times = profiler.collect();
  profiler.deactivate();
  for (const char* region : {"embed", "gemm", "norm_modulate", "rms_rope", "self_attention",
                             "cross_attention", "head"}) {
    EXPECT_TRUE(times.ms.count(region)) << region;
  }
  // No "kv_write" here: the fused path writes K/V from the RMSNorm+RoPE kernel when the slots
  // are one run (this first block), so only the plain path's copy has that region.
  EXPECT_GT(times.span_ms, 0);
  EXPECT_LE(times.covered_ms, times.span_ms * 1.0001);
  EXPECT_GE(times.uncovered_fraction(), 0);
  // Nothing is recorded once deactivated.
  g.next_block();
  EXPECT_TRUE(profiler.collect().ms.empty());
}

// VACE on the fast path: the fixture DiT with random VACE blocks (96 context channels), a new
// context per block and a scale change, on the fused loop (bf16 and FP8 linears), with full hints
// and with hint reuse. `graphs` and `reuse` as named.
struct VaceRunResult {
  at::Tensor latents;
  GeneratorStats stats;
  bool fp8 = false;
};
VaceRunResult run_vace_stream(const DitStream& dit, bool fused, bool fp8, bool graphs, bool reuse,
                              bool vace = true, bool fp8_attention = false) {
  GeneratorOptions o = dit.options(kCuda, at::kBFloat16);
  o.runtime.fused_kernels = fused;
  o.runtime.fp8_linears = fp8;
  o.runtime.fp8_attention = fp8_attention;
  o.runtime.cuda_graphs = graphs;
  o.vace_hint_reuse = reuse;
  const WeightStore module = make_random_vace_weights(o.model, 96, 7);
  StreamGenerator g(dit.weights, o, nullptr, &module);
  g.start(dit.prompt_a(), 5);
  auto gen = at::detail::createCPUGenerator(3);
  std::vector<at::Tensor> out;
  for (int i = 0; i < 10; ++i) {
    if (vace) {
      const at::Tensor context =
          at::randn({96, o.frames_per_block, o.latent_height, o.latent_width}, gen);
      g.set_vace(VaceInput{context, i < 5 ? 1.0 : 0.6});
    }
    if (i == 7) g.switch_prompt(dit.prompt_b());
    out.push_back(g.next_block().to(at::kCPU));
  }
  return {at::cat(out, 1), g.stats(), g.fp8_linears_active()};
}

// VACE steps replay from CUDA graphs (context, scale and hints as graph inputs) and give exactly
// the eager result: full hints and hint reuse, bf16 and FP8 linears.
TEST(VaceFastPath, GraphReplayEqualsEager) {
  REQUIRE_CUDA();
  const DitStream dit;
  for (const bool fp8 : {false, true}) {
    for (const bool reuse : {false, true}) {
      const VaceRunResult eager = run_vace_stream(dit, true, fp8, false, reuse);
      const VaceRunResult replayed = run_vace_stream(dit, true, fp8, true, reuse);
      ASSERT_TRUE(eager.latents.isfinite().all().item<bool>());
      const double max_diff = (replayed.latents - eager.latents).abs().max().item<double>();
      std::cout << "[ vace     ] fp8 " << fp8 << " reuse " << reuse << ": "
                << replayed.stats.graph_captures << " captured, " << replayed.stats.graph_replays
                << " replays, " << replayed.stats.graph_eager_forwards
                << " eager; max |graph - eager| = " << max_diff << "\n";
      EXPECT_EQ(max_diff, 0.0) << "fp8 " << fp8 << " reuse " << reuse;
      EXPECT_GT(replayed.stats.graph_replays, replayed.stats.graph_eager_forwards)
          << "VACE steps replay";
    }
  }
}

// memory_pool with VACE weights: start() warms and captures the VACE steps of every steady plan
// too (full hints and hint reuse), so the first blocks an input conditions replay graphs instead
// of running eagerly and capturing; the latents are those of the graphs captured on the way.
TEST(VaceFastPath, ReservedUpFrontTheVaceStepsAreCapturedAtStart) {
  REQUIRE_CUDA();
  const DitStream dit;
  for (const bool reuse : {false, true}) {
    auto run = [&](bool reserve, GeneratorStats* at_start) {
      GeneratorOptions o = dit.options(kCuda, at::kBFloat16);
      o.runtime.fused_kernels = true;
      o.runtime.cuda_graphs = true;
      o.vace_hint_reuse = reuse;
      o.reserve_up_front = reserve;
      const WeightStore module = make_random_vace_weights(o.model, 96, 7);
      StreamGenerator g(dit.weights, o, nullptr, &module);
      g.start(dit.prompt_a(), 5);
      if (at_start) *at_start = g.stats();
      auto gen = at::detail::createCPUGenerator(3);
      std::vector<at::Tensor> out;
      for (int i = 0; i < 10; ++i) {
        // An input from the third block on, as a pick mid-stream.
        if (i >= 2) {
          const at::Tensor context =
              at::randn({96, o.frames_per_block, o.latent_height, o.latent_width}, gen);
          g.set_vace(VaceInput{context, 0.8});
        }
        out.push_back(g.next_block().to(at::kCPU));
      }
      return std::pair{at::cat(out, 1), g.stats()};
    };
    GeneratorStats at_start;
    const auto [reserved, streamed] = run(true, &at_start);
    const auto [captured_on_the_way, unused] = run(false, nullptr);
    std::cout << "[ vace     ] reuse " << reuse << ": " << at_start.graph_captures
              << " graphs captured at start, " << streamed.graph_captures << " after 10 blocks, "
              << streamed.graph_eager_forwards - at_start.graph_eager_forwards
              << " eager forwards while streaming\n";
    EXPECT_EQ(streamed.graph_captures, at_start.graph_captures)
        << "reuse " << reuse << ": a capture while streaming with VACE";
    EXPECT_EQ(streamed.graph_eager_forwards, at_start.graph_eager_forwards)
        << "reuse " << reuse << ": an eager forward while streaming with VACE";
    EXPECT_TRUE(at::equal(reserved, captured_on_the_way)) << "reuse " << reuse;
  }
}

// The VACE blocks on a side stream beside the DiT's layers (the default) give exactly what one
// stream gives, eager and replayed from graphs, bf16 and FP8: the same kernels on the same
// inputs, only ordered by events instead of by one stream.
TEST(VaceFastPath, SideStreamEqualsOneStream) {
  REQUIRE_CUDA();
  const DitStream dit;
  for (const bool fp8 : {false, true}) {
    for (const bool graphs : {false, true}) {
      const VaceRunResult beside = run_vace_stream(dit, true, fp8, graphs, false);
      at::Tensor serial;
      {
        const ScopedEnv one_stream("LONGLIVE_VACE_STREAM", "serial");
        serial = run_vace_stream(dit, true, fp8, graphs, false).latents;
      }
      ASSERT_TRUE(serial.isfinite().all().item<bool>());
      EXPECT_TRUE(at::equal(beside.latents, serial))
          << "fp8 " << fp8 << " graphs " << graphs
          << ": max |side - serial| = " << (beside.latents - serial).abs().max();
      if (graphs) {
        EXPECT_GT(beside.stats.graph_replays, 0);
      }
    }
  }
}

// Denoising steps in two parts (LONGLIVE_STEP_PARTS=2: CausalWanModel::run_first_part / run_rest,
// two graphs per plan): the VACE stream is bit for bit the whole steps' (the VACE side stream
// joined at the end of the first part), eager and replayed, bf16 and FP8; and a DiT stream whose
// block is given up half-way through a replayed step and redone under the new prompt is bit for
// bit the one where the prompt changed before that block (the first part's state rewritten).
TEST(VaceFastPath, StepsInPartsAreTheWholeStepsAndStopHalfWay) {
  REQUIRE_CUDA();
  const DitStream dit;
  for (const bool fp8 : {false, true}) {
    for (const bool graphs : {false, true}) {
      const at::Tensor whole = run_vace_stream(dit, true, fp8, graphs, false).latents;
      VaceRunResult parts;
      {
        const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
        parts = run_vace_stream(dit, true, fp8, graphs, false);
      }
      ASSERT_TRUE(whole.isfinite().all().item<bool>());
      EXPECT_TRUE(at::equal(whole, parts.latents))
          << "fp8 " << fp8 << " graphs " << graphs
          << ": max |parts - whole| = " << (parts.latents - whole).abs().max();
      if (graphs) {
        EXPECT_GT(parts.stats.graph_replays, 0);
      }
    }
  }
  GeneratorOptions o = dit.options(kCuda, at::kBFloat16);
  o.runtime.fused_kernels = true;
  o.runtime.cuda_graphs = true;
  // The cut past the fixture's window (blocks there can be given up), two blocks after it.
  const int64_t cut_at = (o.local_attn_frames + o.frames_per_block - 1) / o.frames_per_block + 1;
  // half_way: the prompt changes at block cut_at's first question (half-way through its first
  // step, in parts), which gives the block up; otherwise before that block.
  auto run = [&](bool half_way, GeneratorStats* stats) {
    StreamGenerator g(dit.weights, o);
    g.start(dit.prompt_a(), 5);
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < cut_at + 3; ++i) {
      if (i == cut_at && half_way) {
        int64_t asked = 0;
        const std::optional<at::Tensor> given_up = g.next_block_unless([&] {
          if (asked++ != 0) return false;
          g.switch_prompt(dit.prompt_b());
          return true;
        });
        EXPECT_FALSE(given_up.has_value());
        EXPECT_EQ(asked, 1);
      } else if (i == cut_at) {
        g.switch_prompt(dit.prompt_b());
      }
      out.push_back(g.next_block().to(at::kCPU));
    }
    if (stats) *stats = g.stats();
    return at::cat(out, 1);
  };
  const at::Tensor before = run(false, nullptr);
  GeneratorStats stats;
  at::Tensor half_way;
  {
    const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
    half_way = run(true, &stats);
  }
  EXPECT_EQ(stats.abandoned_blocks, 1);
  EXPECT_GT(stats.graph_replays, 0);
  EXPECT_TRUE(at::equal(before, half_way))
      << "max |half-way - before| = " << (half_way - before).abs().max();
  // memory_pool: start() captures the steps' graphs in parts, as the blocks replay them.
  const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
  o.reserve_up_front = true;
  StreamGenerator g(dit.weights, o);
  g.start(dit.prompt_a(), 5);
  const int64_t captured_at_start = g.stats().graph_captures;
  EXPECT_GT(captured_at_start, 0);
  for (int64_t i = 0; i < cut_at + 3; ++i) g.next_block();
  EXPECT_EQ(g.stats().graph_captures, captured_at_start) << "no capture while streaming";
}

// Each VACE block's output (its hint's input) written by the next block's first norm (the
// default) gives exactly what a settle pass after each block gives (LONGLIVE_VACE_SETTLE=pass),
// eager and replayed, bf16 and FP8.
TEST(VaceFastPath, OutputsSettledByTheNextNormEqualTheSettlePass) {
  REQUIRE_CUDA();
  const DitStream dit;
  for (const bool fp8 : {false, true}) {
    for (const bool graphs : {false, true}) {
      const at::Tensor merged = run_vace_stream(dit, true, fp8, graphs, false).latents;
      at::Tensor pass;
      {
        const ScopedEnv own_pass("LONGLIVE_VACE_SETTLE", "pass");
        pass = run_vace_stream(dit, true, fp8, graphs, false).latents;
      }
      ASSERT_TRUE(pass.isfinite().all().item<bool>());
      EXPECT_TRUE(at::equal(merged, pass))
          << "fp8 " << fp8 << " graphs " << graphs
          << ": max |next norm - pass| = " << (merged - pass).abs().max();
    }
  }
}

// In the fp8 presets (FP8 linears and attention) the VACE blocks attend in FP8 too: FA3's FP8
// kernel (sm_90, head dim 128) or else cuDNN's (this fixture's head dim) on q, k and v that their
// RMSNorm+RoPE launch writes in FP8. The path is taken (the video
// moves against LONGLIVE_VACE_FP8_ATTENTION=0, 16-bit VACE attention), it moves less than FP8
// attention moves the DiT itself, and it replays from graphs bit for bit.
TEST(VaceFastPath, Fp8AttentionInTheVaceBlocksStaysCloseAndReplays) {
  REQUIRE_CUDA();
  if (!fp8_attention::available()) GTEST_SKIP() << "FP8 attention unavailable here";
  const DitStream dit;
  const at::Tensor eager = run_vace_stream(dit, true, true, false, false, true, true).latents;
  const at::Tensor replayed = run_vace_stream(dit, true, true, true, false, true, true).latents;
  at::Tensor sixteen_bit_vace;
  {
    const ScopedEnv off("LONGLIVE_VACE_FP8_ATTENTION", "0");
    sixteen_bit_vace = run_vace_stream(dit, true, true, false, false, true, true).latents;
  }
  const at::Tensor no_fp8_attention = run_vace_stream(dit, true, true, false, false).latents;
  ASSERT_TRUE(eager.isfinite().all().item<bool>());
  const double vace_drift = relative_l2(eager, sixteen_bit_vace);
  const double dit_drift = relative_l2(sixteen_bit_vace, no_fp8_attention);
  std::cout << "[ drift    ] FP8 attention in the VACE blocks " << vace_drift
            << "; FP8 attention in the DiT " << dit_drift << " (relative L2 over 10 blocks)\n";
  EXPECT_GT(vace_drift, 0.0) << "the VACE blocks' FP8 attention was not taken";
  EXPECT_LT(vace_drift, 2 * dit_drift + 0.02);
  EXPECT_TRUE(at::equal(replayed, eager)) << "graph replay";
}

// The VACE blocks on the fused kernels stay within bf16 rounding of the plain layer code, and
// with FP8 linears (VACE blocks in FP8 too) within the DiT's own FP8 bound.
TEST(VaceFastPath, FusedAndFp8VaceStayCloseToThePlainPath) {
  REQUIRE_CUDA();
  const DitStream dit;
  const at::Tensor plain = run_vace_stream(dit, false, false, false, false).latents;
  const at::Tensor fused = run_vace_stream(dit, true, false, false, false).latents;
  const VaceRunResult fp8 = run_vace_stream(dit, true, true, false, false);
  EXPECT_TRUE(fp8.fp8);
  // The DiT's own FP8 drift on the same stream without VACE, for scale.
  const at::Tensor dit_bf16 = run_vace_stream(dit, true, false, false, false, false).latents;
  const at::Tensor dit_fp8 = run_vace_stream(dit, true, true, false, false, false).latents;
  const double fused_drift = relative_l2(fused, plain);
  const double fp8_drift = relative_l2(fp8.latents, fused);
  const double dit_fp8_drift = relative_l2(dit_fp8, dit_bf16);
  std::cout << "[ drift    ] VACE fused vs plain " << fused_drift << "; FP8 (DiT + VACE) vs bf16 "
            << fp8_drift << "; FP8 DiT alone (no VACE) vs bf16 " << dit_fp8_drift
            << " (relative L2 over 10 blocks)\n";
  EXPECT_LT(fused_drift, 0.02);
  EXPECT_GT(fp8_drift, 0.0) << "FP8 linears active";
  EXPECT_LT(fp8_drift, 0.3);
  EXPECT_LT(fp8_drift, 2 * dit_fp8_drift + 0.02) << "FP8 VACE blocks add little to the DiT's";
}

// Not a test: the row kernels at the 1.3B's 480x832 shapes (4680 tokens, dim 1536, FFN 8960),
// microseconds and the memory traffic they imply, beside docs/benchmarks.md's kernel tables.
// Runs when LONGLIVE_ROW_KERNEL_BENCH is set; LONGLIVE_ROW_KERNEL_BENCH_JSON names a file for the
// results.
TEST(RowKernelBench, AtTheDitShapes) {
  if (!at::hasCUDA() || !std::getenv("LONGLIVE_ROW_KERNEL_BENCH"))
    GTEST_SKIP() << "set LONGLIVE_ROW_KERNEL_BENCH=1 on a GPU";
  const int64_t frames = 3, seq = 4680, heads = 12, head_dim = 128, dim = heads * head_dim,
                ffn = 8960;
  at::manual_seed(21);
  const at::Tensor hidden = at::randn({seq, ffn}, cuda(at::kBFloat16)) * 2;
  const at::Tensor qkv = at::randn({seq, 3 * dim}, cuda(at::kBFloat16));
  const at::Tensor weight = (at::rand({dim}, cuda(at::kFloat)) + 0.5).to(at::kBFloat16);
  const at::Tensor angles = at::rand({seq, 1, head_dim / 2}, cuda(at::kFloat)) * 100;
  const at::Tensor cos = angles.cos(), sin = angles.sin();
  const at::Tensor q = at::empty({seq, heads, head_dim}, cuda(at::kBFloat16));
  const at::Tensor k = at::empty_like(q), v = at::empty_like(q);
  const at::Tensor x = at::randn({1, seq, dim}, cuda(at::kFloat));
  const at::Tensor y = at::randn({1, seq, dim}, cuda(at::kBFloat16)) * 1e-3;
  const at::Tensor mod = at::randn({1, frames, 6, dim}, cuda(at::kFloat)) * 0.2;
  const at::Tensor gate = mod.narrow(2, 2, 1), shift = mod.narrow(2, 0, 1),
                   scale = mod.narrow(2, 1, 1);
  const fused::NormInputs norm_in{
      .residual = &y, .gate = &gate, .shift = &shift, .scale = &scale, .frames = frames};
  struct Run {
    std::string name;
    double bytes;  // read + written, once each
    std::function<void()> run;
  };
  const double s = static_cast<double>(seq), d = static_cast<double>(dim);
  const double f = static_cast<double>(ffn);
  const std::vector<Run> runs = {
      {"quantize fp8 [4680, 8960]", s * f * 3, [&] { fused::quantize_fp8_rows(hidden, false); }},
      {"gelu (tanh) + quantize fp8 [4680, 8960]", s * f * 3,
       [&] { fused::quantize_fp8_rows(hidden, true, {}, fused::GeluFormula::tanh); }},
      {"gelu (logistic) + quantize fp8 [4680, 8960]", s * f * 3,
       [&] { fused::quantize_fp8_rows(hidden, true, {}, fused::GeluFormula::logistic); }},
      {"rms_rope q [4680, 1536]", s * d * 4,
       [&] { fused::rms_rope(qkv.narrow(1, 0, dim), weight, cos, sin, q, 1e-6); }},
      {"rms_rope k + v copy [4680, 1536]", s * d * 8,
       [&] {
         fused::rms_rope(qkv.narrow(1, dim, dim), weight, cos, sin, k, 1e-6,
                         qkv.narrow(1, 2 * dim, dim), v);
       }},
      {"rms_norm cross q [4680, 1536]", s * d * 4,
       [&] { fused::rms_rope(qkv.narrow(1, 0, dim), weight, {}, {}, q, 1e-6); }},
      {"norm_modulate + gated residual, bf16 out", s * d * 12,
       [&] { fused::norm_modulate(x, norm_in, 1e-6, at::kBFloat16); }},
      {"norm_modulate + gated residual, fp8 out", s * d * 11,
       [&] { fused::norm_modulate_fp8(x, norm_in, 1e-6, at::kBFloat16); }},
  };
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "| kernel | us | GB/s |\n|---|---|---|\n";
  for (const Run& r : runs) {
    for (int i = 0; i < 5; ++i) r.run();
    constexpr int kIterations = 50;
    GpuTimer timer(kCuda);
    timer.start();
    for (int i = 0; i < kIterations; ++i) r.run();
    const double us = timer.stop_ms() / kIterations * 1e3;
    std::cout << "| " << r.name << " | " << us << " | " << r.bytes / us / 1e3 << " |\n";
    rows.push_back({{"kernel", r.name}, {"us", us}, {"gb_per_s", r.bytes / us / 1e3}});
  }
  if (const char* path = std::getenv("LONGLIVE_ROW_KERNEL_BENCH_JSON"))
    std::ofstream(path) << nlohmann::json{{"gpu", device_name(kCuda)},
                                          {"commit", std::getenv("LONGLIVE_COMMIT")
                                                         ? std::getenv("LONGLIVE_COMMIT")
                                                         : "unknown"},
                                          {"rows", rows}}
                               .dump(2)
                        << "\n";
}

}  // namespace
}  // namespace longlive::test
