// FlashAttention-3 as an attention backend (runtime/fa3_attention.h): its slow twins are ATen's
// fp32 math attention and cuDNN's SDPA (the path it replaces). The CPU tests check what runs
// everywhere (parsing, refusal, fallback); the GPU tests skip unless this build carries FA3 and
// the device is sm_90 (LONGLIVE_FA3_DIR; packaging/device/attn_run.sh on the GPU box). The
// benchmark at the end writes the attention comparison table of docs/benchmarks.md.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "longlive/error.h"
#include "longlive/profiler.h"
#include "longlive/wan_model.h"
#include "model/ops.h"
#include "runtime/fa3_attention.h"

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
    const at::Tensor fa3_out = fa3::attention(in.q, in.k, in.v);
    const at::Tensor cudnn_out = ops::attention(in.q, in.k, in.v, AttentionBackend::cudnn);
    EXPECT_EQ(fa3_out.sizes(), reference.sizes());
    const double fa3_error = relative_l2(fa3_out, reference);
    const double cudnn_error = relative_l2(cudnn_out, reference);
    std::cout << "q " << s.q << " kv " << s.kv << ": relative L2 vs fp32 fa3 " << fa3_error
              << " cudnn " << cudnn_error << " fa3-cudnn " << relative_l2(fa3_out, cudnn_out)
              << "\n";
    EXPECT_LT(fa3_error, 1.25 * cudnn_error + 1e-4) << s.q << "x" << s.kv;
    EXPECT_LT(relative_l2(fa3_out, cudnn_out), 1e-2) << s.q << "x" << s.kv;
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

// Inside a CUDA graph, as the DiT runs it: the replay equals the eager call bit for bit.
TEST(Fa3Attention, ReplaysFromACudaGraph) {
  REQUIRE_FA3();
#ifdef LONGLIVE_WITH_CUDA
  at::manual_seed(5);
  const Inputs in = dit_inputs(4680, 18720);
  const at::Tensor eager = fa3::attention(in.q, in.k, in.v);
  EXPECT_TRUE(fa3::attention(in.q, in.k, in.v).equal(eager)) << "deterministic";
  at::cuda::CUDAGraph graph;
  at::Tensor captured;
  {
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
    c10::cuda::device_synchronize();
    const c10::cuda::CUDAStreamGuard guard(side);
    graph.capture_begin();
    captured = fa3::attention(in.q, in.k, in.v);
    graph.capture_end();
  }
  graph.replay();
  c10::cuda::device_synchronize();
  EXPECT_TRUE(captured.equal(eager));
#endif
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
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "| backend | shape (q x kv) | ms | TFLOP/s |\n|---|---|---|---|\n";
  for (const Shape& s : shapes) {
    at::manual_seed(11);
    const Inputs in = dit_inputs(s.q, s.kv);
    const double tflop = 4.0 * 12 * s.q * s.kv * 128 / 1e12;
    for (const auto& [name, backend] : backends) {
      for (int i = 0; i < 5; ++i) ops::attention(in.q, in.k, in.v, backend);
      constexpr int kIterations = 50;
      GpuTimer timer(device);
      timer.start();
      for (int i = 0; i < kIterations; ++i) ops::attention(in.q, in.k, in.v, backend);
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
