#pragma once
// Counts the bytes CPU tensors hold: installed as LibTorch's CPU allocator for one scope, it
// forwards to the default allocator and records the current and peak bytes allocated inside the
// scope. Memory of backend libraries that bypass c10 (oneDNN scratchpads) is not seen.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace longlive::test {

class CountingCpuAllocator final : public c10::Allocator {
 public:
  CountingCpuAllocator() : previous_(c10::GetCPUAllocator()) {
    instance() = this;
    c10::SetCPUAllocator(this, kPriority);
  }
  ~CountingCpuAllocator() override {
    c10::SetCPUAllocator(previous_, kPriority);
    instance() = nullptr;
  }

  c10::DataPtr allocate(size_t n) override {
    void* data = c10::alloc_cpu(n);
    {
      std::lock_guard lock(mutex_);
      sizes_[data] = n;
      current_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, current_);
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  int64_t current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  int64_t peak() const {
    std::lock_guard lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard lock(mutex_);
    peak_ = current_;
  }

 private:
  static constexpr uint8_t kPriority = 200;
  static CountingCpuAllocator*& instance() {
    static CountingCpuAllocator* self = nullptr;
    return self;
  }
  static void release(void* data) {
    if (CountingCpuAllocator* self = instance()) {
      std::lock_guard lock(self->mutex_);
      if (auto it = self->sizes_.find(data); it != self->sizes_.end()) {
        self->current_ -= static_cast<int64_t>(it->second);
        self->sizes_.erase(it);
      }
    }
    c10::free_cpu(data);
  }

  c10::Allocator* previous_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
  int64_t current_ = 0, peak_ = 0;
};

}  // namespace longlive::test
