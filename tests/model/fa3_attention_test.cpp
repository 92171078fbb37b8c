// FlashAttention-3 as an attention backend (runtime/fa3_attention.h): its slow twins are ATen's
// fp32 math attention and cuDNN's SDPA (the path it replaces). The CPU tests check what runs
// everywhere (parsing, refusal, fallback); the GPU tests skip unless this build carries FA3 and
// the device is sm_90 (LONGLIVE_FA3_DIR; packaging/device/attn_run.sh on the GPU box). The
// benchmark at the end writes the attention comparison table of docs/benchmarks.md.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "graph_replay.h"
#include "longlive/error.h"
#include "longlive/profiler.h"
#include "longlive/wan_model.h"
#include "model/ops.h"
#include "runtime/fa3_attention.h"
#include "runtime/fp8_attention.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace longlive::test {
namespace {

double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

at::TensorOptions cuda_bf16() {
  return at::TensorOptions().dtype(at::kBFloat16).device(at::Device(at::kCUDA, 0));
}

#define REQUIRE_FA3()                                                                 \
  if (!at::hasCUDA() || !fa3::usable_on(at::Device(at::kCUDA, 0)))                    \
  GTEST_SKIP() << (fa3::compiled() ? "FlashAttention-3 runs on sm_90 only"            \
                                   : "this build has no FlashAttention-3 (configure " \
                                     "with LONGLIVE_FA3_DIR)")

// q as the DiT makes it ([B, S, H, D] viewed as [B, H, S, D]); k/v as the KV cache hands them
// out: the first `kv` tokens of a longer [B, S_cache, H, D] buffer, viewed as [B, H, S, D].
struct Inputs {
  at::Tensor q, k, v;
};
Inputs dit_inputs(int64_t q_tokens, int64_t kv_tokens, int64_t heads = 12) {
  const at::Tensor q = at::randn({1, q_tokens, heads, 128}, cuda_bf16()).transpose(1, 2);
  const at::Tensor cache = at::randn({2, 1, kv_tokens + 64, heads, 128}, cuda_bf16());
  return {q, cache[0].narrow(1, 0, kv_tokens).transpose(1, 2),
          cache[1].narrow(1, 0, kv_tokens).transpose(1, 2)};
}

TEST(Fa3Attention, CpuTensorsTakeAtensPath) {
  at::manual_seed(1);
  const at::Tensor q = at::randn({1, 2, 9, 128}), k = at::randn({1, 2, 13, 128}),
                   v = at::randn({1, 2, 13, 128});
  EXPECT_FALSE(fa3::accepts(q, k, v));
  EXPECT_FALSE(fa3::accepts(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16)));
  EXPECT_FALSE(fa3::usable_on(at::Device(at::kCPU)));
  EXPECT_TRUE(ops::attention(q, k, v).allclose(ops::attention(q, k, v, AttentionBackend::math),
                                               1e-5, 1e-5));
  EXPECT_THROW(fa3::attention(q, k, v), Error);
}

TEST(Fa3Attention, SchedulesParseAndBadOnesAreNamed) {
  EXPECT_EQ(fa3::parse_plan("whole").schedule, fa3::Schedule::whole);
  EXPECT_EQ(fa3::parse_plan("tail").schedule, fa3::Schedule::tail);
  const fa3::Plan three = fa3::parse_plan("split3");
  EXPECT_EQ(three.schedule, fa3::Schedule::split);
  EXPECT_EQ(three.splits, 3);
  EXPECT_EQ(fa3::to_string(three), "split3");
  EXPECT_EQ(fa3::to_string(fa3::parse_plan("split16")), "split16");
  const fa3::Plan tail = fa3::parse_plan("tail");
  EXPECT_EQ(tail.splits, 0) << "as many parts as fit one round";
  EXPECT_EQ(fa3::to_string(tail), "tail");
  const fa3::Plan tail5 = fa3::parse_plan("tail5");
  EXPECT_EQ(tail5.schedule, fa3::Schedule::tail);
  EXPECT_EQ(tail5.splits, 5);
  EXPECT_EQ(fa3::to_string(tail5), "tail5");
  EXPECT_EQ(fa3::to_string(fa3::parse_plan("tail16")), "tail16");
  for (const char* bad : {"", "split", "split1", "split17", "split2x", "Whole", "tail1", "tail17",
                          "tail2x", "tail002", "tails"}) {
    try {
      fa3::parse_plan(bad);
      ADD_FAILURE() << "'" << bad << "' parsed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("LONGLIVE_FA3_SCHEDULE"), std::string::npos);
    }
  }
}

// The tail schedule at the DiT's shapes on 132 SMs (an H200): 37 query tiles x 12 heads = 444
// tiles are 3 full rounds (33 tile rows) and 48 tiles split in two; the arithmetic holds for
// any shape: the whole part is whole tile rows, the split tiles fit one round.
TEST(Fa3Attention, TailSplitsOnlyTheLastRound) {
  const fa3::Plan tail{fa3::Schedule::tail, 0};
  fa3::Partition p = fa3::partition(tail, 4680, 18720, 12, 132);
  EXPECT_EQ(p.whole_rows, 33 * 128);
  EXPECT_EQ(p.split_rows, 4680 - 33 * 128);
  EXPECT_EQ(p.splits, 2);
  // The re-cache: 147 tile rows x 12 = 1764 tiles, 14 rounds with 4.5 % idle: stays whole.
  p = fa3::partition(tail, 18720, 18720, 12, 132);
  EXPECT_EQ(p.whole_rows, 18720);
  EXPECT_EQ(p.split_rows, 0);
  // 12 tiles on 78 SMs: one round mostly idle, all of it split in 3 (4680 keys are 27 key
  // tiles, at least 8 per part), though 6 x 12 = 72 would fit the round.
  p = fa3::partition(tail, 128, 4680, 12, 78);
  EXPECT_EQ(p.whole_rows, 0);
  EXPECT_EQ(p.split_rows, 128);
  EXPECT_EQ(p.splits, 3);
  // Cross-attention (512 text tokens, 3 key tiles): too short to split.
  EXPECT_EQ(fa3::partition(tail, 4680, 512, 12, 132).split_rows, 0);
  // FP8's 224-key tiles: the steady block splits the same way; 1408 keys (7 tiles) run whole.
  p = fa3::partition(tail, 4680, 18720, 12, 132, fa3::kFp8KeyTile);
  EXPECT_EQ(p.whole_rows, 33 * 128);
  EXPECT_EQ(p.splits, 2);
  EXPECT_EQ(fa3::partition(tail, 128, 1408, 12, 132, fa3::kFp8KeyTile).split_rows, 0);
  EXPECT_EQ(fa3::partition(tail, 128, 1408, 12, 132).splits, 1) << "8 bf16 tiles: one part";
  for (const int64_t tile : {fa3::kBf16KeyTile, fa3::kFp8KeyTile})
    for (int64_t q : {1, 77, 128, 1000, 1560, 4680, 9999, 18720})
      for (int64_t kv : {130, 400, 1408, 4680, 18720})
        for (int64_t hb : {1, 12, 24, 40})
          for (int sms : {1, 78, 114, 132}) {
            p = fa3::partition(tail, q, kv, hb, sms, tile);
            ASSERT_EQ(p.whole_rows + p.split_rows, q) << q << " " << hb << " " << sms;
            if (p.split_rows == 0) continue;
            EXPECT_EQ(p.whole_rows % 128, 0);
            const int64_t split_tiles = (p.split_rows + 127) / 128 * hb;
            EXPECT_GE(p.splits, 2);
            EXPECT_LE(split_tiles * p.splits, sms) << q << " " << hb << " " << sms;
            EXPECT_LE(p.splits * 8, (kv + tile - 1) / tile) << "a part of fewer than 8 key tiles";
          }
  // whole never splits, split splits every row, degenerate sizes run whole.
  EXPECT_EQ(fa3::partition({fa3::Schedule::whole, 1}, 4680, 18720, 12, 132).split_rows, 0);
  EXPECT_EQ(fa3::partition({fa3::Schedule::split, 3}, 77, 130, 12, 132).split_rows, 0);
  p = fa3::partition({fa3::Schedule::split, 3}, 4680, 18720, 12, 132);
  EXPECT_EQ(p.whole_rows, 0);
  EXPECT_EQ(p.split_rows, 4680);
  EXPECT_EQ(p.splits, 3);
  EXPECT_EQ(fa3::partition(tail, 4680, 18720, 12, 0).split_rows, 0);
}

// tailN: the same rows split, into N parts even where they take more than one round of the SMs
// (the steady block's 48 tail tiles in 5 parts: 240 CTAs), but never into parts of fewer than 8
// key tiles (18720 keys are 107 bf16 tiles: 13 parts at most) and only where `tail` would split.
TEST(Fa3Attention, TailWithAPartCountSplitsTheSameRowsIntoThatMany) {
  const fa3::Plan tail5{fa3::Schedule::tail, 5}, tail16{fa3::Schedule::tail, 16};
  fa3::Partition p = fa3::partition(tail5, 4680, 18720, 12, 132);
  EXPECT_EQ(p.whole_rows, 33 * 128);
  EXPECT_EQ(p.split_rows, 4680 - 33 * 128);
  EXPECT_EQ(p.splits, 5);
  EXPECT_EQ(fa3::partition(tail16, 4680, 18720, 12, 132).splits, 13);
  EXPECT_EQ(fa3::partition(tail5, 4680, 18720, 12, 132, fa3::kFp8KeyTile).splits, 5);
  EXPECT_EQ(fa3::partition(tail16, 4680, 18720, 12, 132, fa3::kFp8KeyTile).splits, 10)
      << "84 FP8 key tiles";
  EXPECT_EQ(fa3::partition(tail5, 18720, 18720, 12, 132).split_rows, 0) << "the re-cache";
  EXPECT_EQ(fa3::partition(tail5, 4680, 512, 12, 132).split_rows, 0) << "cross-attention";
  for (const int n : {2, 3, 5, 8, 16})
    for (int64_t q : {77, 1000, 4680, 9999})
      for (int64_t kv : {400, 4680, 18720})
        for (int sms : {78, 132}) {
          const fa3::Partition auto_part = fa3::partition({fa3::Schedule::tail, 0}, q, kv, 12, sms);
          p = fa3::partition({fa3::Schedule::tail, n}, q, kv, 12, sms);
          ASSERT_EQ(p.whole_rows + p.split_rows, q);
          if (p.split_rows == 0) continue;
          EXPECT_EQ(p.whole_rows, auto_part.whole_rows) << q << " " << kv << " " << sms;
          EXPECT_GE(p.splits, 2);
          EXPECT_LE(p.splits, n);
          EXPECT_LE(p.splits * 8, (kv + 175) / 176) << "a part of fewer than 8 key tiles";
        }
}

// Against fp32 math attention of the same bf16 inputs. A bf16 output alone is ~1.1e-3 RMS off
// (half an ulp of 8 mantissa bits), so the bound is the path FA3 replaces: within 1.25x of
// cuDNN's own error at the same inputs, and FA3 and cuDNN within 1e-2 of each other.
TEST(Fa3Attention, AsCloseToAnFp32ReferenceAsCudnn) {
  REQUIRE_FA3();
  struct Shape {
    int64_t q, kv;
  };
  // Steady block (3 frames of 1560 tokens against the 12-frame window), the first block, the
  // re-cache (the whole window), and lengths that are no multiple of any tile.
  for (const Shape s : {Shape{4680, 18720}, Shape{1560, 4680}, Shape{18720, 18720},
                        Shape{1000, 3001}, Shape{77, 130}}) {
    at::manual_seed(s.q + s.kv);
    const Inputs in = dit_inputs(s.q, s.kv);
    ASSERT_TRUE(fa3::accepts(in.q, in.k, in.v)) << s.q << "x" << s.kv;
    const at::Tensor reference = ops::attention(in.q.to(at::kFloat), in.k.to(at::kFloat),
                                                in.v.to(at::kFloat), AttentionBackend::math);
    const at::Tensor cudnn_out = ops::attention(in.q, in.k, in.v, AttentionBackend::cudnn);
    const double cudnn_error = relative_l2(cudnn_out, reference);
    // Every schedule: the split ones combine fp32 partials, so they are held to the same bound.
    for (const char* schedule : {"whole", "tail", "tail5", "split2", "split3"}) {
      const fa3::Plan plan = fa3::parse_plan(schedule);
      // Poison: the caching allocator hands this block back to the output just below.
      at::full({1, s.q, 12, 128}, NAN, cuda_bf16());
      const at::Tensor fa3_out = fa3::attention(in.q, in.k, in.v, plan);
      EXPECT_EQ(fa3_out.sizes(), reference.sizes());
      ASSERT_TRUE(fa3_out.isfinite().all().item<bool>()) << schedule << " " << s.q;
      const double fa3_error = relative_l2(fa3_out, reference);
      std::cout << "q " << s.q << " kv " << s.kv << " " << schedule << ": relative L2 vs fp32 fa3 "
                << fa3_error << " cudnn " << cudnn_error << " fa3-cudnn "
                << relative_l2(fa3_out, cudnn_out) << "\n";
      EXPECT_LT(fa3_error, 1.25 * cudnn_error + 1e-4) << schedule << " " << s.q << "x" << s.kv;
      EXPECT_LT(relative_l2(fa3_out, cudnn_out), 1e-2) << schedule << " " << s.q << "x" << s.kv;
    }
  }
}

TEST(Fa3Attention, AutomaticTakesItAndCudnnTakesTheRest) {
  REQUIRE_FA3();
  at::manual_seed(3);
  const Inputs in = dit_inputs(4680, 18720);
  EXPECT_TRUE(ops::attention(in.q, in.k, in.v).equal(fa3::attention(in.q, in.k, in.v)));
  // fp16, head dim 64 and strides TMA cannot read are not taken: automatic goes to cuDNN.
  const at::Tensor qh = in.q.to(at::kHalf), kh = in.k.to(at::kHalf), vh = in.v.to(at::kHalf);
  EXPECT_FALSE(fa3::accepts(qh, kh, vh));
  EXPECT_TRUE(
      ops::attention(qh, kh, vh).equal(ops::attention(qh, kh, vh, AttentionBackend::cudnn)));
  EXPECT_FALSE(fa3::accepts(in.q.narrow(3, 0, 64), in.k.narrow(3, 0, 64), in.v.narrow(3, 0, 64)));
  const at::Tensor odd = at::randn({1, 12, 100, 131}, cuda_bf16()).narrow(3, 0, 128);
  EXPECT_FALSE(fa3::accepts(odd, in.k, in.v)) << "row stride 131 elements";
}

TEST(Fa3Attention, ReplaysFromACudaGraph) {
  REQUIRE_FA3();
  at::manual_seed(5);
  const Inputs in = dit_inputs(4680, 18720);
  for (const char* schedule : {"whole", "tail", "split2"})
    expect_replay_equals_eager(
        [&, plan = fa3::parse_plan(schedule)] { return fa3::attention(in.q, in.k, in.v, plan); },
        schedule);
}

// The fp8 presets' attention: q, k, v quantised to E4M3 at scale 1 as the FP8 KV cache holds
// them. The reference is fp32 math attention on exactly those (dequantised) values, so what is
// measured is the kernel's own error (P in FP8, the output rounding); the bound is the path it
// replaces, cuDNN's FP8 kernel (E4M3 output on Hopper), where this build has it.
TEST(Fa3Attention, Fp8AsCloseToAnFp32ReferenceAsCudnnFp8) {
  REQUIRE_FA3();
  struct Shape {
    int64_t q, kv;
  };
  for (const Shape s : {Shape{4680, 18720}, Shape{18720, 18720}, Shape{4680, 4680},
                        Shape{1000, 3001}, Shape{77, 130}}) {
    at::manual_seed(s.q * 7 + s.kv);
    const Inputs in = dit_inputs(s.q, s.kv);
    const at::Tensor q8 = fp8_attention::quantize(in.q), k8 = fp8_attention::quantize(in.k),
                     v8 = fp8_attention::quantize(in.v);
    ASSERT_TRUE(fa3::accepts_fp8(q8, k8, v8)) << s.q << "x" << s.kv;
    EXPECT_FALSE(fa3::accepts(q8, k8, v8)) << "the bf16 kernel does not take FP8";
    const at::Tensor reference = ops::attention(q8.to(at::kFloat), k8.to(at::kFloat),
                                                v8.to(at::kFloat), AttentionBackend::math);
    double cudnn_error = -1;
    if (fp8_attention::available() && fp8_attention::supported(q8, k8, v8))
      cudnn_error = relative_l2(fp8_attention::attention(q8, k8, v8).to(at::kFloat), reference);
    // Every schedule (the split ones combine fp32 partials): held to the same bounds.
    for (const char* schedule : {"whole", "tail", "split2", "split3"}) {
      at::full({1, s.q, 12, 128}, NAN, cuda_bf16());  // poison the block the output reuses
      const at::Tensor out = fa3::attention_fp8(q8, k8, v8, fa3::parse_plan(schedule));
      EXPECT_EQ(out.scalar_type(), at::kBFloat16);
      EXPECT_EQ(out.sizes(), reference.sizes());
      ASSERT_TRUE(out.isfinite().all().item<bool>()) << schedule << " " << s.q << "x" << s.kv;
      const double error = relative_l2(out, reference);
      std::cout << "fp8 q " << s.q << " kv " << s.kv << " " << schedule
                << ": relative L2 vs fp32 fa3 " << error << " cudnn " << cudnn_error << "\n";
      // FP8 inputs at scale 1, P in FP8, bf16 out: 0.022-0.026 on the H200 (cuDNN FP8, E4M3
      // out: 0.035-0.054; bf16 attention: ~2.3e-3).
      EXPECT_LT(error, 3e-2) << schedule << " " << s.q << "x" << s.kv;
      if (cudnn_error >= 0) {
        EXPECT_LT(error, 1.25 * cudnn_error + 1e-3) << schedule << " " << s.q << "x" << s.kv;
      }
    }
  }
  // Other dtypes and strides TMA cannot read are not taken.
  const Inputs in = dit_inputs(256, 512);
  EXPECT_FALSE(fa3::accepts_fp8(in.q, in.k, in.v)) << "bf16";
  // Narrowed after quantising (quantize() writes a dense tensor of its own).
  const at::Tensor odd =
      fp8_attention::quantize(at::randn({1, 12, 100, 136}, cuda_bf16())).narrow(3, 0, 128);
  const at::Tensor k8 = fp8_attention::quantize(in.k), v8 = fp8_attention::quantize(in.v);
  EXPECT_FALSE(fa3::accepts_fp8(odd, k8, v8)) << "row stride 136 bytes";
  EXPECT_THROW(fa3::attention_fp8(odd, k8, v8), Error);
}

TEST(Fa3Attention, Fp8ReplaysFromACudaGraph) {
  REQUIRE_FA3();
  at::manual_seed(6);
  const Inputs in = dit_inputs(4680, 18720);
  const at::Tensor q8 = fp8_attention::quantize(in.q), k8 = fp8_attention::quantize(in.k),
                   v8 = fp8_attention::quantize(in.v);
  for (const char* schedule : {"whole", "tail", "split2"})
    expect_replay_equals_eager(
        [&, plan = fa3::parse_plan(schedule)] { return fa3::attention_fp8(q8, k8, v8, plan); },
        schedule);
}

// Not a test: the attention comparison table of docs/benchmarks.md (backend x shape -> ms,
// TFLOP/s). Runs when LONGLIVE_ATTENTION_BENCH is set; LONGLIVE_ATTENTION_BENCH_JSON names a file
// for the results.
TEST(AttentionBench, BackendsAtTheDitShapes) {
  if (!at::hasCUDA() || !std::getenv("LONGLIVE_ATTENTION_BENCH"))
    GTEST_SKIP() << "set LONGLIVE_ATTENTION_BENCH=1 on a GPU";
  const at::Device device(at::kCUDA, 0);
  struct Shape {
    const char* name;
    int64_t q, kv;
  };
  const Shape shapes[] = {{"steady block", 4680, 18720},
                          {"re-cache (window)", 18720, 18720},
                          {"first block", 4680, 4680}};
  // automatic is FA3 where it runs (the row says so), else cuDNN's again.
  std::vector<std::pair<std::string, AttentionBackend>> backends = {
      {"cudnn", AttentionBackend::cudnn},
      {"flash (FA2, ATen)", AttentionBackend::flash},
      {"efficient (ATen)", AttentionBackend::efficient}};
  if (fa3::usable_on(device))
    backends.insert(backends.begin(), {"fa3 (auto)", AttentionBackend::automatic});
  // FA3's schedules side by side (fa3::Plan), beside whatever automatic takes.
  const std::vector<std::string> schedules =
      fa3::usable_on(device)
          ? std::vector<std::string>{"whole", "tail", "tail3", "tail4", "tail5", "tail8", "split2"}
          : std::vector<std::string>{};
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "| backend | shape (q x kv) | ms | TFLOP/s |\n|---|---|---|---|\n";
  for (const Shape& s : shapes) {
    at::manual_seed(11);
    const Inputs in = dit_inputs(s.q, s.kv);
    const double tflop = 4.0 * 12 * s.q * s.kv * 128 / 1e12;
    struct Row {
      std::string name;
      std::function<at::Tensor()> run;
    };
    std::vector<Row> runs;
    for (const auto& [name, backend] : backends)
      // An init-capture: clang before 16 cannot capture a structured binding (the sanitizer
      // builds).
      runs.push_back(
          {name, [&, backend = backend] { return ops::attention(in.q, in.k, in.v, backend); }});
    for (const std::string& schedule : schedules)
      runs.push_back({"fa3 " + schedule, [&, plan = fa3::parse_plan(schedule)] {
                        return fa3::attention(in.q, in.k, in.v, plan);
                      }});
    // FP8 (the fp8 presets' self-attention), on the same values quantised at scale 1.
    const at::Tensor q8 = fp8_attention::quantize(in.q), k8 = fp8_attention::quantize(in.k),
                     v8 = fp8_attention::quantize(in.v);
    for (const std::string& schedule : schedules)
      runs.push_back({"fa3 fp8 " + schedule, [&, plan = fa3::parse_plan(schedule)] {
                        return fa3::attention_fp8(q8, k8, v8, plan);
                      }});
    if (fp8_attention::available() && fp8_attention::supported(q8, k8, v8))
      runs.push_back({"cudnn fp8", [&] { return fp8_attention::attention(q8, k8, v8); }});
    for (const auto& [name, run] : runs) {
      for (int i = 0; i < 5; ++i) run();
      constexpr int kIterations = 50;
      GpuTimer timer(device);
      timer.start();
      for (int i = 0; i < kIterations; ++i) run();
      const double ms = timer.stop_ms() / kIterations;
      std::cout << "| " << name << " | " << s.name << " " << s.q << " x " << s.kv << " | " << ms
                << " | " << tflop / (ms / 1e3) << " |\n";
      rows.push_back({{"backend", name},
                      {"shape", s.name},
                      {"q_tokens", s.q},
                      {"kv_tokens", s.kv},
                      {"heads", 12},
                      {"head_dim", 128},
                      {"ms", ms},
                      {"tflops", tflop / (ms / 1e3)}});
    }
  }
  if (const char* path = std::getenv("LONGLIVE_ATTENTION_BENCH_JSON"))
    std::ofstream(path) << nlohmann::json{{"gpu", device_name(device)}, {"rows", rows}}.dump(2)
                        << "\n";
}

}  // namespace
}  // namespace longlive::test
