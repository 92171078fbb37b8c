#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>

#include "longlive/engine.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace longlive {
namespace {

// LibTorch's default CPU allocator takes every tensor buffer from posix_memalign(64). glibc before
// 2.38 cannot give a freed aligned chunk to the next aligned request of the same size (it looks
// for size + alignment + a header, glibc bug 14581), so each new buffer under the mmap threshold
// is cut from the top of the heap while the freed ones split into scraps: with long-lived small
// allocations in between the heap only grows (the soak's ~4 KiB of anonymous memory per block,
// malloc's bytes in use flat). This allocator asks plain malloc for size + 64 + a pointer, aligns
// inside it and keeps malloc's pointer just before the buffer: a freed buffer is an ordinary
// chunk that the next request of its size reuses exactly.
class ReusingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kAlignment = 64;  // LibTorch's gAlignment (AVX-512 loads)

  c10::DataPtr allocate(size_t bytes) override {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (bytes == 0) return {nullptr, nullptr, &release, cpu};
    constexpr size_t kExtra = kAlignment + sizeof(void*);
    TORCH_CHECK(bytes <= SIZE_MAX - kExtra, "CPU allocator: ", bytes, " bytes is too large");
    void* raw = std::malloc(bytes + kExtra);
    TORCH_CHECK(raw != nullptr, "CPU allocator: not enough memory: you tried to allocate ", bytes,
                " bytes.");
    const uintptr_t after_header = reinterpret_cast<uintptr_t>(raw) + sizeof(void*);
    void* data = reinterpret_cast<void*>((after_header + kAlignment - 1) & ~(kAlignment - 1));
    static_cast<void**>(data)[-1] = raw;
    return {data, data, &release, cpu};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void release(void* data) {
    if (data) std::free(static_cast<void**>(data)[-1]);
  }
};

}  // namespace

void keep_large_host_buffers_out_of_the_heap() {
#if defined(__GLIBC__)
  // Setting it also turns glibc's dynamic threshold off. 64 KiB: the value the soak measured
  // flat with (MALLOC_MMAP_THRESHOLD_=65536).
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
  // Lives as long as the process: tensors may outlive main(). Buffers the default allocator gave
  // out before this call keep its deleter, so installing it late is safe.
  static ReusingCpuAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);  // the default registers with priority 0
}

}  // namespace longlive
