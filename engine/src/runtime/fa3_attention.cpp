#include "runtime/fa3_attention.h"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "longlive/capabilities.h"
#include "longlive/error.h"
#include "longlive/log.h"

#ifdef LONGLIVE_WITH_FA3
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <stdexcept>

#include "runtime/fa3_kernel.h"
#endif

namespace longlive::fa3 {

namespace {
constexpr int64_t kHeadDim = 128;

// TMA descriptors take a 16-byte aligned base and strides in multiples of 16 bytes, size-1
// dimensions included.
bool aligned(const at::Tensor& t) {
  if (reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  for (int64_t d = 0; d < 3; ++d)
    if (t.stride(d) % 8 != 0) return false;
  return t.stride(3) == 1;
}
}  // namespace

bool compiled() {
#ifdef LONGLIVE_WITH_FA3
  return true;
#else
  return false;
#endif
}

bool usable_on(const at::Device& device) {
  if (!compiled() || !device.is_cuda()) return false;
  // 0 = not probed, 1 = no, 2 = yes; one probe per device index.
  static std::array<std::atomic<int>, 64> state{};
  const int index = device.has_index() ? device.index() : 0;
  if (index < 0 || index >= static_cast<int>(state.size())) return false;
  int s = state[index].load(std::memory_order_relaxed);
  if (s == 0) {
    // sm_90a code (TMA, wgmma) runs on sm_90 alone; a forced lower capability goes without it.
    const DeviceCapabilities caps = probe_capabilities(at::Device(at::kCUDA, index));
    s = caps.sm == 90 && caps.fused_kernels ? 2 : 1;
    state[index].store(s, std::memory_order_relaxed);
    if (s == 2) log::info("attention: FlashAttention-3 on {}", caps.describe());
  }
  return s == 2;
}

bool accepts(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (!q.is_cuda() || !k.is_cuda() || !v.is_cuda() || q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    return false;
  for (const at::Tensor* t : {&q, &k, &v})
    if (t->scalar_type() != at::kBFloat16 || t->size(3) != kHeadDim || !aligned(*t)) return false;
  return q.size(0) == k.size(0) && k.sizes() == v.sizes() && k.size(1) > 0 &&
         q.size(1) % k.size(1) == 0 && q.size(2) > 0 && k.size(2) > 0;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (!accepts(q, k, v))
    throw Error(fmt::format(
        "FlashAttention-3: q {} k {} v {} ({}) not taken: needs bf16 CUDA [B, H, S, 128] with a "
        "contiguous last dim and 16-byte aligned strides",
        c10::str(q.sizes()), c10::str(k.sizes()), c10::str(v.sizes()),
        c10::toString(q.scalar_type())));
#ifdef LONGLIVE_WITH_FA3
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t b = q.size(0), h = q.size(1), sq = q.size(2);
  // [B, Sq, H, D] storage, returned as the [B, H, Sq, D] view callers expect.
  at::Tensor out = at::empty({b, sq, h, kHeadDim}, q.options());
  at::Tensor lse = at::empty({b, h, sq}, q.options().dtype(at::kFloat));
  Bf16Hdim128Args a;
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  a.out = out.data_ptr();
  a.lse = lse.data_ptr<float>();
  a.batch = static_cast<int>(b);
  a.heads = static_cast<int>(h);
  a.kv_heads = static_cast<int>(k.size(1));
  a.q_tokens = static_cast<int>(sq);
  a.kv_tokens = static_cast<int>(k.size(2));
  // ops::attention's tensors are [B, H, S, D]; FA3 names the strides (batch, row, head).
  a.q_batch_stride = q.stride(0), a.q_head_stride = q.stride(1), a.q_row_stride = q.stride(2);
  a.k_batch_stride = k.stride(0), a.k_head_stride = k.stride(1), a.k_row_stride = k.stride(2);
  a.v_batch_stride = v.stride(0), a.v_head_stride = v.stride(1), a.v_row_stride = v.stride(2);
  a.o_batch_stride = out.stride(0), a.o_row_stride = out.stride(1), a.o_head_stride = out.stride(2);
  a.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(kHeadDim)));
  a.sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  try {
    run_bf16_hdim128(a, at::cuda::getCurrentCUDAStream());
  } catch (const std::runtime_error& e) {
    throw Error(e.what());
  }
  return out.transpose(1, 2);
#else
  throw Error("FlashAttention-3 is not in this build (configure with LONGLIVE_FA3_DIR)");
#endif
}

}  // namespace longlive::fa3
