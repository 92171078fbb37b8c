// GEMMs through cuBLASLt with the algorithm timed at first sight (runtime/lt_gemm.h) against
// ATen's addmm and _addmm_activation, and the choices file; skipped without CUDA (run on the GPU
// box: wave7_run.sh's tests step). The choices go to a file of this process's own.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "graph_replay.h"
#include "model/ops.h"
#include "runtime/lt_gemm.h"

namespace longlive::test {
namespace {

#define REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU paths are tested on the GPU box"

// Before the first lt_gemm call of the process: the registry reads its file once.
const std::filesystem::path& choices_file() {
  static const std::filesystem::path file = [] {
    const std::filesystem::path f = std::filesystem::temp_directory_path() /
                                    ("longlive-lt-gemm-test-" + std::to_string(getpid())) /
                                    "gemm-algorithms.json";
    setenv("LONGLIVE_GEMM_TUNING_FILE", f.c_str(), 1);
    return f;
  }();
  return file;
}
const bool kChoicesFileSet = !choices_file().empty();

double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

at::Tensor aten_reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                          lt_gemm::Epilogue epilogue) {
  if (epilogue == lt_gemm::Epilogue::bias) return at::linear(x, w, b);
  return at::_addmm_activation(b, x, w.t(), 1, 1, /*use_gelu=*/true);
}

// Every timed choice against ATen's result (16-bit rounding of another summation order at
// most), for the 1.3B's FFN and QKV shapes at 480x832 (a row more or fewer) and a small one, bf16
// and f16, both epilogues; a shape seen again is not timed again and gives the same bits; after the
// plans are dropped (as in a new process) the choice comes from the file, with the same bits again.
TEST(LtGemm, TunedAlgorithmsMatchAten) {
  REQUIRE_CUDA();
  struct Shape {
    int64_t m, k, n;
  };
  // Rows no other test of this process uses (the DiT's 4680 are seen, and timed, by the fast-path
  // tests before these run): each shape here is new to the registry and to the choices file.
  for (const Shape s : {Shape{4681, 1536, 8960}, Shape{4679, 1536, 4608}, Shape{301, 256, 512}}) {
    for (const at::ScalarType type : {at::kBFloat16, at::kHalf}) {
      for (const auto epilogue : {lt_gemm::Epilogue::bias, lt_gemm::Epilogue::gelu_bias}) {
        const std::string where = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                  std::to_string(s.k) + " " + c10::toString(type) +
                                  (epilogue == lt_gemm::Epilogue::bias ? " bias" : " gelu");
        at::manual_seed(21);
        const auto opts = at::TensorOptions().dtype(type).device(at::kCUDA, 0);
        const at::Tensor x = at::randn({s.m, s.k}, opts);
        const at::Tensor w = at::randn({s.n, s.k}, opts) / 32;
        const at::Tensor b = at::randn({s.n}, opts);
        const int64_t tuned_before = lt_gemm::stats().tuned;
        const std::optional<at::Tensor> y = lt_gemm::linear(x, w, b, epilogue);
        ASSERT_TRUE(y.has_value()) << where;
        EXPECT_EQ(lt_gemm::stats().tuned, tuned_before + 1) << where;
        EXPECT_GT(lt_gemm::stats().last_candidates, 0) << where;
        EXPECT_LT(relative_l2(*y, aten_reference(x, w, b, epilogue)), 5e-3) << where;
        const std::optional<at::Tensor> again = lt_gemm::linear(x, w, b, epilogue);
        ASSERT_TRUE(again.has_value()) << where;
        EXPECT_EQ(lt_gemm::stats().tuned, tuned_before + 1) << where << ": timed twice";
        EXPECT_TRUE(again->equal(*y)) << where << ": not the same bits (a video must replay)";
        const int64_t from_file_before = lt_gemm::stats().from_file;
        lt_gemm::clear();
        const std::optional<at::Tensor> from_file = lt_gemm::linear(x, w, b, epilogue);
        ASSERT_TRUE(from_file.has_value()) << where;
        EXPECT_EQ(lt_gemm::stats().tuned, tuned_before + 1) << where << ": timed again";
        EXPECT_EQ(lt_gemm::stats().from_file, from_file_before + 1) << where;
        EXPECT_TRUE(from_file->equal(*y)) << where << ": the file's choice gives other bits";
      }
    }
  }
}

// The choices file the test above wrote: a JSON object with an entry per shape.
TEST(LtGemm, ChoicesAreWrittenToTheFile) {
  REQUIRE_CUDA();
  ASSERT_TRUE(kChoicesFileSet);
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA, 0);
  const at::Tensor x = at::randn({136, 256}, bf16), w = at::randn({512, 256}, bf16),
                   b = at::randn({512}, bf16);
  ASSERT_TRUE(lt_gemm::linear(x, w, b, lt_gemm::Epilogue::bias).has_value());
  ASSERT_TRUE(std::filesystem::exists(choices_file())) << choices_file();
  EXPECT_GT(std::filesystem::file_size(choices_file()), 2u);
}

// What it does not take goes back to the caller (std::nullopt), and ops::linear then runs ATen's.
TEST(LtGemm, ArgumentsItDoesNotTakeAreLeftToAten) {
  REQUIRE_CUDA();
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA, 0);
  const at::Tensor x = at::randn({64, 128}, bf16), w = at::randn({256, 128}, bf16),
                   b = at::randn({256}, bf16);
  using lt_gemm::Epilogue;
  // 2 bytes off a 16-byte boundary.
  const at::Tensor shifted = at::randn({64 * 128 + 1}, bf16).narrow(0, 1, 64 * 128).view({64, 128});
  EXPECT_FALSE(lt_gemm::linear(shifted, w, b, Epilogue::bias).has_value());
  EXPECT_FALSE(lt_gemm::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat), Epilogue::bias)
                   .has_value())
      << "float32";
  EXPECT_FALSE(lt_gemm::linear(x.t(), w, b, Epilogue::bias).has_value()) << "not contiguous";
  EXPECT_FALSE(lt_gemm::linear(x.narrow(1, 0, 100).contiguous(), w.narrow(1, 0, 100).contiguous(),
                               b, Epilogue::bias)
                   .has_value())
      << "K not a multiple of 8";
  EXPECT_FALSE(lt_gemm::linear(x.cpu(), w.cpu(), b.cpu(), Epilogue::bias).has_value()) << "CPU";
  EXPECT_LT(relative_l2(ops::linear(shifted, w, b), at::linear(shifted, w, b)), 1e-6);
}

// A shape timed eagerly replays from a CUDA graph (the DiT's first sight of a plan is eager, its
// capture comes after): the captured call equals the eager one.
TEST(LtGemm, ATunedShapeReplaysFromACudaGraph) {
  REQUIRE_CUDA();
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA, 0);
  at::manual_seed(22);
  const at::Tensor x = at::randn({1560, 1536}, bf16), w = at::randn({1536, 1536}, bf16) / 32,
                   b = at::randn({1536}, bf16);
  ASSERT_TRUE(lt_gemm::linear(x, w, b, lt_gemm::Epilogue::gelu_bias).has_value());
  expect_replay_equals_eager(
      [&] { return *lt_gemm::linear(x, w, b, lt_gemm::Epilogue::gelu_bias); },
      "GELU epilogue, 1560x1536x1536");
}

}  // namespace
}  // namespace longlive::test
