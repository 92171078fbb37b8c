// keep_large_host_buffers_out_of_the_heap(): LibTorch's CPU tensor buffers come from an allocator
// whose freed buffers the next buffer of the same size reuses (the soak's remaining heap growth on
// glibc 2.36 went with posix_memalign, docs/reliability.md).
#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#include "longlive/engine.h"

namespace longlive::test {
namespace {

// Frees a buffer between two small allocations (so it cannot merge with the top of the heap) and
// asks for one of the same size again: how often (of `tries`) the freed buffer came back.
int reused_of(c10::Allocator& allocator, size_t bytes, int tries) {
  int reused = 0;
  std::vector<std::unique_ptr<char[]>> guards;
  guards.reserve(2 * static_cast<size_t>(tries));
  for (int i = 0; i < tries; ++i) {
    guards.push_back(std::make_unique<char[]>(100));
    void* first = nullptr;
    {
      c10::DataPtr buffer = allocator.allocate(bytes);
      first = buffer.get();
      guards.push_back(std::make_unique<char[]>(100));
    }
    const c10::DataPtr again = allocator.allocate(bytes);
    reused += again.get() == first;
  }
  return reused;
}

TEST(HostMemory, TensorBuffersAreAlignedAndWork) {
  keep_large_host_buffers_out_of_the_heap();
  ASSERT_NE(c10::GetCPUAllocator(), c10::GetDefaultCPUAllocator());
  for (int64_t n : {1, 3, 1000, 40000}) {  // small ones in the heap, the last one mmapped
    const at::Tensor t = at::arange(n, at::kDouble);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u) << n;
    EXPECT_EQ(t.sum().item<double>(), static_cast<double>(n) * static_cast<double>(n - 1) / 2);
  }
  at::Tensor grown = at::ones({10});
  grown.resize_({100000});  // reallocates through the storage's allocator
  EXPECT_EQ(grown.slice(0, 0, 10).sum().item<float>(), 10.0f);
  EXPECT_EQ(at::empty({0}).numel(), 0);
}

// A sanitizer's allocator replaces malloc and holds freed memory back on purpose (ASan's
// quarantine), so reuse is glibc's behaviour to measure, not theirs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LONGLIVE_MALLOC_REPLACED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LONGLIVE_MALLOC_REPLACED 1
#endif
#endif

TEST(HostMemory, AFreedBufferIsReusedByTheNextOfItsSize) {
#ifdef LONGLIVE_MALLOC_REPLACED
  GTEST_SKIP() << "measures glibc malloc's reuse (a sanitizer replaces malloc)";
#endif
  keep_large_host_buffers_out_of_the_heap();
  constexpr int kTries = 20;
  // From tcache-sized scraps to chunks of the heap's bins (the mmap threshold is 64 KiB).
  for (size_t bytes : {size_t{200}, size_t{1000}, size_t{5000}, size_t{25000}})
    EXPECT_EQ(reused_of(*c10::GetCPUAllocator(), bytes, kTries), kTries) << bytes << " bytes";
#if defined(__GLIBC__)
  // What it works around: with glibc before 2.38, posix_memalign (LibTorch's default) hardly ever
  // takes a small freed buffer back for the same size: it asks malloc for size + alignment + a
  // header, so the freed ones wait in other bins while new ones are cut elsewhere.
  int major = 0, minor = 0;
  if (std::sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) == 2 && major == 2 && minor < 38)
    EXPECT_LT(reused_of(*c10::GetDefaultCPUAllocator(), 200, kTries), kTries / 2);  // 0 or 1
#endif
}

}  // namespace
}  // namespace longlive::test
