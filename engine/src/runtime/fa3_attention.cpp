#include "runtime/fa3_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>

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
constexpr int64_t kBlockM = 128;   // FA3's query tile height for head dim 128 on sm_90 (bf16, FP8)
constexpr int kMaxSplits = 16;     // the combine kernel instantiation we build
constexpr double kMinIdle = 0.10;  // tail: split only a last round that leaves this much idle
constexpr int64_t kMinKeyTilesPerPart = 8;  // tail: no part shorter than this many key tiles

// TMA descriptors take a 16-byte aligned base and strides in multiples of 16 bytes, size-1
// dimensions included.
bool aligned(const at::Tensor& t) {
  if (reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  const int64_t elements_in_16_bytes = 16 / static_cast<int64_t>(t.element_size());
  for (int64_t d = 0; d < 3; ++d)
    if (t.stride(d) % elements_in_16_bytes != 0) return false;
  return t.stride(3) == 1;
}

bool shapes_taken(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  at::ScalarType dtype) {
  if (!q.is_cuda() || !k.is_cuda() || !v.is_cuda() || q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    return false;
  for (const at::Tensor* t : {&q, &k, &v})
    if (t->scalar_type() != dtype || t->size(3) != kHeadDim || !aligned(*t)) return false;
  return q.size(0) == k.size(0) && k.sizes() == v.sizes() && k.size(1) > 0 &&
         q.size(1) % k.size(1) == 0 && q.size(2) > 0 && k.size(2) > 0;
}
}  // namespace

Plan parse_plan(const std::string& text) {
  if (text == "whole") return {Schedule::whole, 1};
  if (text == "tail") return {Schedule::tail, 0};
  // splitN and tailN, N in [2, kMaxSplits].
  for (const auto& [prefix, schedule] : {std::pair{std::string("split"), Schedule::split},
                                         std::pair{std::string("tail"), Schedule::tail}}) {
    if (text.rfind(prefix, 0) != 0 || text.size() <= prefix.size() ||
        text.size() > prefix.size() + 2)
      continue;
    const std::string digits = text.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const int n = std::atoi(digits.c_str());
    if (n >= 2 && n <= kMaxSplits) return {schedule, n};
  }
  throw Error(fmt::format(
      "LONGLIVE_FA3_SCHEDULE: '{}' is not a FlashAttention-3 schedule (whole, tail, tail2 .. "
      "tail{}, split2 .. split{})",
      text, kMaxSplits, kMaxSplits));
}

std::string to_string(const Plan& plan) {
  switch (plan.schedule) {
    case Schedule::whole:
      return "whole";
    case Schedule::tail:
      return plan.splits >= 2 ? fmt::format("tail{}", plan.splits) : "tail";
    case Schedule::split:
      return fmt::format("split{}", plan.splits);
  }
  return "?";
}

namespace {
Plan plan_from_env(const char* name, const Plan& otherwise) {
  const char* env = std::getenv(name);
  return env && *env ? parse_plan(env) : otherwise;
}
}  // namespace

const Plan& default_plan() {
  static const Plan plan = plan_from_env("LONGLIVE_FA3_SCHEDULE", Plan{});
  return plan;
}

const Plan& default_fp8_plan() {
  static const Plan plan = plan_from_env("LONGLIVE_FA3_FP8_SCHEDULE", Plan{});
  return plan;
}

Partition partition(const Plan& plan, int64_t q_tokens, int64_t kv_tokens, int64_t heads_x_batch,
                    int sm_count, int64_t key_tile) {
  const Partition whole{q_tokens, 0, 1};
  if (q_tokens <= 0 || kv_tokens <= 0 || heads_x_batch <= 0 || sm_count <= 0) return whole;
  if (plan.schedule == Schedule::whole) return whole;
  const int64_t n_blocks = (kv_tokens + key_tile - 1) / key_tile;
  if (plan.schedule == Schedule::split) {
    const int64_t splits = std::min<int64_t>(std::clamp(plan.splits, 2, kMaxSplits), n_blocks);
    return splits < 2 ? whole : Partition{0, q_tokens, static_cast<int>(splits)};
  }
  // tail: the query tiles that fill whole rounds of the SMs stay whole; only whole tile rows
  // (every head of a 128-row block) can move, so the whole part ends on such a row.
  const int64_t m_blocks = (q_tokens + kBlockM - 1) / kBlockM;
  const int64_t tiles = m_blocks * heads_x_batch;
  // Measured on the H200 (docs/benchmarks.md): splitting the tail paid where the whole
  // schedule left 16 % of the SM rounds idle (steady block, 444 tiles) and cost 2.5 % where it
  // left 4.5 % (re-cache, 1764 tiles): the extra launches and the combine cost about as much as
  // a small tail. So only a tail that idles at least kMinIdle of the rounds is split.
  const int64_t whole_rounds = (tiles + sm_count - 1) / sm_count;
  if (static_cast<double>(tiles) / static_cast<double>(whole_rounds * sm_count) > 1.0 - kMinIdle)
    return whole;
  const int64_t rounds = tiles / sm_count;
  const int64_t whole_m = rounds * sm_count / heads_x_batch;
  const int64_t tail_tiles = (m_blocks - whole_m) * heads_x_batch;
  if (tail_tiles <= 0) return whole;
  // Each part keeps at least kMinKeyTilesPerPart key tiles: on short key ranges (the 512 text
  // tokens of cross-attention) a tile is too little work for the extra launches to pay
  // (measured: cross-attention 6.2 ms per block whole, 8.3 ms with its tail split).
  // As many parts as fit one round; tailN: N parts where that splits (more than one round of
  // shorter parts can leave fewer SMs idle than one round of longer ones).
  const int64_t most = std::min(n_blocks / kMinKeyTilesPerPart, int64_t{kMaxSplits});
  int64_t splits = std::min(sm_count / tail_tiles, most);
  if (splits < 2) return whole;
  if (plan.splits >= 2) splits = std::min<int64_t>(plan.splits, most);
  const int64_t whole_rows = whole_m * kBlockM;
  return {whole_rows, q_tokens - whole_rows, static_cast<int>(splits)};
}

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
    if (s == 2)
      log::info("attention: FlashAttention-3 on {}, schedule {}", caps.describe(),
                to_string(default_plan()));
  }
  return s == 2;
}

bool accepts(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return shapes_taken(q, k, v, at::kBFloat16);
}

bool accepts_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return shapes_taken(q, k, v, at::kFloat8_e4m3fn);
}

#ifdef LONGLIVE_WITH_FA3
namespace {
// What a failure at FA3's launch check needs beside it: whether the stream was capturing a CUDA
// graph, and whether an earlier call had already invalidated that capture.
std::string capture_note(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) return "";
  switch (status) {
    case cudaStreamCaptureStatusActive:
      return " (during a CUDA graph capture)";
    case cudaStreamCaptureStatusInvalidated:
      return " (the CUDA graph capture on this stream had been invalidated by an earlier call)";
    default:
      return "";
  }
}

// FA3's launch check reads cudaGetLastError: an error an earlier launch or call on this thread
// left behind would be reported as FA3's own failure. Name it as what it is instead.
void check_nothing_pending(cudaStream_t stream) {
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending == cudaSuccess) return;
  (void)cudaGetLastError();  // a sticky error stays; a non-sticky one is reported here, once
  throw Error(fmt::format(
      "a CUDA error from an earlier call was pending before FlashAttention-3's launch: {} ({}){}",
      cudaGetErrorName(pending), cudaGetErrorString(pending), capture_note(stream)));
}

// One launch over the query rows of `q` into `out` ([B, Sq, H, D] storage, the same rows).
void launch(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
            int splits, int sm_count, bool fp8 = false) {
  const int64_t b = q.size(0), h = q.size(1), sq = q.size(2);
  const auto fp32 = q.options().dtype(at::kFloat);
  const at::Tensor lse = at::empty({b, h, sq}, fp32);
  at::Tensor o_accum, lse_accum;
  if (splits > 1) {
    o_accum = at::empty({splits, b, h, sq, kHeadDim}, fp32);
    lse_accum = at::empty({splits, b, h, sq}, fp32);
  }
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
  a.sm_count = sm_count;
  a.num_splits = splits;
  if (splits > 1) {
    a.o_accum = o_accum.data_ptr<float>();
    a.lse_accum = lse_accum.data_ptr<float>();
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(stream);
  try {
    if (fp8)
      run_e4m3_hdim128(a, stream);
    else
      run_bf16_hdim128(a, stream);
  } catch (const std::runtime_error& e) {
    throw Error(e.what() + capture_note(stream));
  }
}

// The plan's partition of q's rows over the persistent and the split kernel, into a bf16
// [B, Sq, H, D] buffer returned as the [B, H, Sq, D] view callers expect. Row offsets are
// multiples of 128 rows, so the narrowed views keep TMA's alignment.
at::Tensor run_plan(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Plan& plan,
                    bool fp8) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t b = q.size(0), h = q.size(1), sq = q.size(2);
  const at::Tensor out = at::empty({b, sq, h, kHeadDim}, q.options().dtype(at::kBFloat16));
  const int sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const Partition part =
      partition(plan, sq, k.size(2), b * h, sm_count, fp8 ? kFp8KeyTile : kBf16KeyTile);
  if (part.whole_rows > 0)
    launch(q.narrow(2, 0, part.whole_rows), k, v, out.narrow(1, 0, part.whole_rows), 1, sm_count,
           fp8);
  if (part.split_rows > 0)
    launch(q.narrow(2, part.whole_rows, part.split_rows), k, v,
           out.narrow(1, part.whole_rows, part.split_rows), part.splits, sm_count, fp8);
  return out.transpose(1, 2);
}
}  // namespace
#endif

namespace {
// Both kernels' entry: inputs it does not take are an error naming them and what it needs; a
// build without FA3 says so.
at::Tensor checked_run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const Plan& plan, bool fp8) {
  if (!(fp8 ? accepts_fp8(q, k, v) : accepts(q, k, v)))
    throw Error(fmt::format(
        "{}: q {} k {} v {} ({}) not taken: needs {} CUDA [B, H, S, 128] with a contiguous last "
        "dim and 16-byte aligned strides",
        fp8 ? "FlashAttention-3 FP8" : "FlashAttention-3", c10::str(q.sizes()), c10::str(k.sizes()),
        c10::str(v.sizes()), c10::toString(q.scalar_type()), fp8 ? "float8_e4m3fn" : "bf16"));
#ifdef LONGLIVE_WITH_FA3
  return run_plan(q, k, v, plan, fp8);
#else
  (void)plan;
  throw Error("FlashAttention-3 is not in this build (configure with LONGLIVE_FA3_DIR)");
#endif
}
}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return attention(q, k, v, default_plan());
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const Plan& plan) {
  return checked_run(q, k, v, plan, false);
}

at::Tensor attention_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return attention_fp8(q, k, v, default_fp8_plan());
}

at::Tensor attention_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const Plan& plan) {
  return checked_run(q, k, v, plan, true);
}

}  // namespace longlive::fa3
