// The kernel profiler without a GPU: its reason for not sampling, the names it shows and the
// table it builds from CUPTI's records (fed by hand here).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "longlive/kernel_profiler.h"
#include "longlive/profiler.h"

namespace longlive::test {
namespace {

// What unavailable_reason() must say on a machine without a GPU, for this build.
std::string expected_reason() {
#ifndef LONGLIVE_WITH_CUDA
  return "built without CUDA";
#else
  return KernelProfiler::built_with_cupti() ? "no CUDA device" : "built without the CUPTI headers";
#endif
}

// CUPTI's name strings live only as long as their records: the table is keyed by the text, so
// samples whose records carry the same names at new addresses add nothing, and an address reused
// for another kernel's name does not take the old name.
TEST(KernelNameTable, InternsByTextNotByAddress) {
  KernelNameTable table;
  const std::vector<std::string> kernels = {"_Z6gemm_kPf", "_Z7softmaxPf", "flash_fwd_kernel"};
  for (int sample = 0; sample < 100; ++sample) {
    std::vector<std::string> buffer(kernels);  // this sample's copies, at new addresses
    for (const std::string& k : buffer) EXPECT_EQ(table.name(table.intern(k.c_str())), k);
  }
  EXPECT_EQ(table.size(), kernels.size());
  char reused[32] = "_Z6gemm_kPf";
  const uint32_t gemm = table.intern(reused);
  std::snprintf(reused, sizeof reused, "%s", "layer_norm_kernel");
  const uint32_t norm = table.intern(reused);
  EXPECT_NE(gemm, norm);
  EXPECT_EQ(table.name(gemm), "_Z6gemm_kPf");
  EXPECT_EQ(table.name(norm), "layer_norm_kernel");
  EXPECT_EQ(table.size(), kernels.size() + 1);
}

TEST(KernelProfiler, SaysWhyItCannotSampleWithoutAGpu) {
  if (KernelProfiler::built_with_cupti() && at::hasCUDA())
    GTEST_SKIP() << "a GPU is here: kernel_profiler_gpu_test.cpp covers sampling";
  const std::string reason = KernelProfiler::unavailable_reason();
  EXPECT_EQ(reason, expected_reason());
  EXPECT_EQ(KernelProfiler::prepare(), reason);

  KernelProfiler profiler;
  EXPECT_FALSE(profiler.start());
  EXPECT_EQ(profiler.last_error(), reason);
  EXPECT_FALSE(profiler.sampling());
  profiler.stop();  // without a sample: nothing to stop
  {
    const ProfileScope scope("gemm");  // no region is pushed when nothing samples
    EXPECT_FALSE(detail::kernel_regions_on.load());
  }
  const KernelTable table = profiler.collect();
  EXPECT_EQ(table.unavailable, reason);
  EXPECT_TRUE(table.rows.empty());
  EXPECT_EQ(table.kernels, 0);
  EXPECT_EQ(format_kernel_table(table), "kernels        unavailable: " + reason + "\n");
}

TEST(KernelProfiler, DemanglesKernelSymbols) {
  EXPECT_EQ(demangle_kernel_name("_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_"
                                 "15CUDAFunctor_addIfEESt5arrayIPcLm3EEEEviT0_T1_"),
            "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, "
            "std::array<char*, 3ul> >(int, at::native::CUDAFunctor_add<float>, std::array<char*, "
            "3ul>)");
  // cuBLAS/cuDNN kernels are often plain C names; a broken symbol stays as it came.
  EXPECT_EQ(demangle_kernel_name("sm90_xmma_gemm_bf16bf16_bf16f32"),
            "sm90_xmma_gemm_bf16bf16_bf16f32");
  EXPECT_EQ(demangle_kernel_name("_Z_not_a_symbol"), "_Z_not_a_symbol");
}

TEST(KernelProfiler, ShortensNamesFromTheInnermostTemplateArgumentsOut) {
  const std::string add =
      "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, "
      "std::array<char*, 3ul> >(int, at::native::CUDAFunctor_add<float>, std::array<char*, 3ul>)";
  // No return type, no parameters, no at::native::, no "> >".
  EXPECT_EQ(shorten_kernel_name(add, 200),
            "vectorized_elementwise_kernel<4, CUDAFunctor_add<float>, std::array<char*, 3ul>>");
  EXPECT_EQ(shorten_kernel_name(add, 72),
            "vectorized_elementwise_kernel<4, CUDAFunctor_add<...>, std::array<...>>");
  EXPECT_EQ(shorten_kernel_name(add, 40), "vectorized_elementwise_kernel<...>");
  EXPECT_EQ(shorten_kernel_name(add, 20), "vectorized_elemen...");
  EXPECT_EQ(shorten_kernel_name("void (anonymous namespace)::softmax_warp_forward<float, float, "
                                "float, 10, false, false>(float*, float const*, int, int, int)"),
            "softmax_warp_forward<float, float, float, 10, false, false>");
  // A lambda's parameters inside the template arguments are not the kernel's parameter list.
  EXPECT_EQ(shorten_kernel_name("void at::native::elementwise_kernel<128, 2, "
                                "at::native::gpu_kernel_impl<at::native::MulFunctor<float> >("
                                "at::TensorIteratorBase&)::{lambda(int)#1}>(int, "
                                "at::native::gpu_kernel_impl<at::native::MulFunctor<float> >("
                                "at::TensorIteratorBase&)::{lambda(int)#1})",
                                200),
            "elementwise_kernel<128, 2, gpu_kernel_impl<MulFunctor<float>>(TensorIteratorBase&)::{"
            "lambda(int)#1}>");
  // Only whole namespace qualifiers go: "format::" keeps its "at::".
  EXPECT_EQ(shorten_kernel_name("void format::copy_kernel(int)"), "format::copy_kernel");
  EXPECT_EQ(shorten_kernel_name("sm90_xmma_gemm_bf16bf16_bf16f32"),
            "sm90_xmma_gemm_bf16bf16_bf16f32");
}

KernelRecord record(std::string symbol, std::string region, uint64_t start_us, uint64_t end_us,
                    bool in_graph = false) {
  return {std::move(symbol), std::move(region), start_us * 1000, end_us * 1000, in_graph};
}

TEST(KernelProfiler, TabulatesByRegionThenKernelLargestFirst) {
  const std::string add =
      "_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_15CUDAFunctor_addIfEESt5arrayIPcLm3EEEE"
      "viT0_T1_";
  const std::vector<KernelRecord> records = {
      record("gemm_a", "gemm", 50, 350),                      // 0.3 ms
      record("gemm_a", "gemm", 500, 800),                     // 0.3 ms
      record("gemm_b", "gemm", 800, 900),                     // 0.1 ms
      record(add, "norm_modulate", 1000, 1050),               // 0.05 ms
      record("graph_kernel", "dit_graph", 1100, 1300, true),  // 0.2 ms, in a graph
      record("graph_kernel", "dit_graph", 1300, 1500, true),  // 0.2 ms, in a graph
      record("stray", "", 1600, 1650),                        // outside any region
      record("running", "gemm", 1700, 0),                     // no end yet: left out
  };
  const KernelTable t = tabulate_kernels(records);
  EXPECT_TRUE(t.unavailable.empty());
  EXPECT_EQ(t.kernels, 7);
  EXPECT_EQ(t.graph_kernels, 2);
  EXPECT_EQ(t.incomplete, 1);
  EXPECT_NEAR(t.kernel_ms, 1.2, 1e-9);
  EXPECT_NEAR(t.window_ms, 1.6, 1e-9);  // 50 us .. 1650 us
  ASSERT_EQ(t.rows.size(), 5u);
  // gemm (0.7 ms), dit_graph (0.4), then the two 0.05 ms regions in name order.
  EXPECT_EQ(t.rows[0].region, "gemm");
  EXPECT_EQ(t.rows[0].name, "gemm_a");
  EXPECT_EQ(t.rows[0].count, 2);
  EXPECT_NEAR(t.rows[0].total_ms, 0.6, 1e-9);
  EXPECT_NEAR(t.rows[0].mean_ms, 0.3, 1e-9);
  EXPECT_NEAR(t.rows[0].share, 0.5, 1e-9);
  EXPECT_EQ(t.rows[1].region, "gemm");
  EXPECT_EQ(t.rows[1].name, "gemm_b");
  EXPECT_EQ(t.rows[2].region, "dit_graph");
  EXPECT_EQ(t.rows[2].count, 2);
  EXPECT_EQ(t.rows[2].graph_count, 2);
  EXPECT_NEAR(t.rows[2].share, 0.4 / 1.2, 1e-9);
  EXPECT_EQ(t.rows[3].region, std::string(kNoRegion));
  EXPECT_EQ(t.rows[3].name, "stray");
  EXPECT_EQ(t.rows[4].region, "norm_modulate");
  EXPECT_EQ(t.rows[4].name,
            "vectorized_elementwise_kernel<4, CUDAFunctor_add<...>, std::array<...>>");
  EXPECT_EQ(t.rows[4].full_name.rfind("void at::native::vectorized_elementwise_kernel<4", 0), 0u);
  double shares = 0;
  for (const KernelRow& r : t.rows) shares += r.share;
  EXPECT_NEAR(shares, 1.0, 1e-9);

  const std::string text = format_kernel_table(t);
  EXPECT_NE(text.find("7 kernels (2 in CUDA graphs), 1.2 ms of kernel time in a 1.6 ms window"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("incomplete: 0 records dropped by CUPTI, 1 without timestamps"),
            std::string::npos);
  // A region line with its count and total, then its kernels indented under it.
  EXPECT_NE(text.find("\n  gemm "), std::string::npos);
  EXPECT_NE(text.find("\n    gemm_a "), std::string::npos);
  EXPECT_LT(text.find("\n  gemm "), text.find("\n  dit_graph "));
  // max_rows cuts each region's kernel list and says how many were left out.
  const std::string top = format_kernel_table(t, 1);
  EXPECT_EQ(top.find("\n    gemm_b "), std::string::npos);
  EXPECT_NE(top.find("(1 more kernels)"), std::string::npos);
}

// What one sample ran beyond another, by kernel over all regions (bench --vace: a VACE block
// against the plain one): counts and times subtracted, the largest time difference first,
// kernels that did not change left out, and the tables' totals in the text.
TEST(KernelProfiler, DifferenceOfTwoSamplesByKernel) {
  const KernelTable without = tabulate_kernels({
      record("gemm", "dit_graph", 100, 400, true),
      record("norm", "dit_graph", 400, 500, true),
      record("same", "dit_graph", 500, 600, true),
  });
  const KernelTable with = tabulate_kernels({
      record("gemm", "dit_graph", 100, 400, true),
      record("gemm", "dit_graph", 400, 600, true),    // one more, 0.2 ms
      record("attention", "vace", 600, 1000),         // new, 0.4 ms
      record("same", "dit_graph", 1000, 1100, true),  // unchanged
  });                                                 // "norm" gone: -1, -0.1 ms
  const std::vector<KernelDifference> d = kernel_difference(with, without);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].name, "attention");
  EXPECT_EQ(d[0].count, 1);
  EXPECT_NEAR(d[0].total_ms, 0.4, 1e-9);
  EXPECT_EQ(d[1].name, "gemm");
  EXPECT_EQ(d[1].count, 1);
  EXPECT_NEAR(d[1].total_ms, 0.2, 1e-9);
  EXPECT_EQ(d[2].name, "norm");
  EXPECT_EQ(d[2].count, -1);
  EXPECT_NEAR(d[2].total_ms, -0.1, 1e-9);
  const std::string text = format_kernel_difference(with, without);
  EXPECT_NE(text.find("difference: +1 kernels, +0.5 ms of kernel time (1.0 - 0.5), +0.5 ms of "
                      "window (1.0 - 0.5)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("same"), std::string::npos) << text;
  EXPECT_NE(format_kernel_difference(with, without, 1).find("(2 more kernels)"), std::string::npos);
  KernelTable none;
  none.unavailable = "the bench runs on the CPU";
  EXPECT_NE(format_kernel_difference(with, none).find("no difference: the bench runs on the CPU"),
            std::string::npos);
}

TEST(KernelProfiler, EmptySampleIsAnEmptyTable) {
  const KernelTable t = tabulate_kernels({});
  EXPECT_TRUE(t.rows.empty());
  EXPECT_EQ(t.kernels, 0);
  EXPECT_EQ(t.kernel_ms, 0);
  EXPECT_EQ(t.window_ms, 0);
}

}  // namespace
}  // namespace longlive::test
