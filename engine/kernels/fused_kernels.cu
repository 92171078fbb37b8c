// Fused row kernels of the DiT (see fused_kernels.h). One thread block per token row keeps the row
// in registers, so each kernel reads its inputs once and writes its outputs once: the plain ATen
// path makes 5-10 full passes over the [tokens, dim] float32 residual stream for the same work.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "fused_kernels.h"

namespace longlive::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = static_cast<int>(kMaxRowDim / kThreads);

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half(v);
}
// Rounds through the 16-bit type, as the plain path does between its ops.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// Sum over the block; every thread gets the result. `smem` holds one float per warp.
__device__ float block_sum(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // the previous reduction's readers are done with smem
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float t = lane < static_cast<int>(blockDim.x >> 5) ? smem[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

__device__ float block_max(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float t = lane < static_cast<int>(blockDim.x >> 5) ? smem[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

// One element of a row of any ElemType, as float (the hint's type is not a template argument:
// one branch on a uniform value instead of three times the instantiations).
__device__ __forceinline__ float load_any(const void* p, ElemType type, int64_t i) {
  switch (type) {
    case ElemType::f32:
      return static_cast<const float*>(p)[i];
    case ElemType::f16:
      return to_float(static_cast<const __half*>(p)[i]);
    default:
      return to_float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
}

// x + hint * scale with the product and the sum each rounded to float32 (no FMA contraction):
// what `x.add_(hint * scale)` gives, which the plain path runs.
__device__ __forceinline__ float add_hint(float x, float hint, float scale) {
  return __fadd_rn(x, __fmul_rn(hint, scale));
}

// A row's FP8 scale, max(amax / 448, 1e-12), for every row-wise quantisation here (the norm
// kernels' FP8 output, both quantisation kernels): one expression, so the same bits. The norm
// kernels' FP8 output (kFp8) rounds the row to OutT first (what the 16-bit output would hold),
// then out = fp8(value * (1 / scale)), as quantize_fp8_rows_kernel does on the 16-bit output.
__device__ __forceinline__ float fp8_row_scale(float amax, float* smem) {
  return fmaxf(block_max(amax, smem) / 448.f, 1e-12f);
}

template <typename ResT, typename OutT, bool kFp8 = false>
__global__ void __launch_bounds__(kThreads) norm_modulate_kernel(NormModulateArgs a) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const int64_t frame = row / a.tokens_per_frame;
  const int dim = static_cast<int>(a.dim);
  float* x = a.x + row * a.dim;
  const ResT* residual = a.residual ? static_cast<const ResT*>(a.residual) + row * a.dim : nullptr;
  const float* gate = a.gate ? a.gate + frame * a.gate_stride : nullptr;
  const float hint_scale = a.hint ? *a.hint_scale : 0.f;
  OutT* out = static_cast<OutT*>(a.out) + row * a.dim;

  float v[kPerThread];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    float xi = 0.f;
    if (i < dim) {
      xi = x[i];
      if (a.hint) xi = add_hint(xi, load_any(a.hint, a.hint_type, row * a.dim + i), hint_scale);
      if (residual) {
        const float y = to_float(residual[i]);
        xi = xi + (gate ? y * gate[i] : y);
      }
      if (residual || a.hint) x[i] = xi;
      if constexpr (!kFp8)
        if (!a.normalize) out[i] = from_float<OutT>(xi);
      if (a.settled) static_cast<OutT*>(a.settled)[row * a.dim + i] = from_float<OutT>(xi);
    }
    v[k] = xi;
    sum += xi;
  }
  if (!a.normalize) return;
  const float mean = block_sum(sum, smem) / static_cast<float>(dim);
  float squares = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < dim) {
      const float d = v[k] - mean;
      squares += d * d;
    }
  }
  const float rstd = rsqrtf(block_sum(squares, smem) / static_cast<float>(dim) + a.eps);

  const float* shift = a.shift ? a.shift + frame * a.frame_stride : nullptr;
  const float* scale = a.scale ? a.scale + frame * a.frame_stride : nullptr;
  float amax = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < dim) {
      float n = (v[k] - mean) * rstd;
      if (scale) {
        n = n * (1.f + scale[i]) + shift[i];
      } else if (a.weight) {
        n = n * a.weight[i] + a.bias[i];
      }
      if constexpr (kFp8) {
        v[k] = round_to<OutT>(n);
        amax = fmaxf(amax, fabsf(v[k]));
      } else {
        out[i] = from_float<OutT>(n);
      }
    }
  }
  if constexpr (kFp8) {
    const float row_scale = fp8_row_scale(amax, smem);
    const float inverse = 1.f / row_scale;
    __nv_fp8_e4m3* q = static_cast<__nv_fp8_e4m3*>(a.out) + row * a.dim;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = threadIdx.x + k * kThreads;
      if (i < dim) q[i] = __nv_fp8_e4m3(v[k] * inverse);
    }
    if (threadIdx.x == 0) a.fp8_scales[row] = row_scale;
  }
}

// Four consecutive elements of a 16-bit or float row as floats, and back.
template <typename T>
struct Quad;
template <>
struct Quad<float> {
  using storage = float4;
  static __device__ __forceinline__ float4 load(const float* p) {
    return *reinterpret_cast<const float4*>(p);
  }
  static __device__ __forceinline__ void store(float* p, float4 v) {
    *reinterpret_cast<float4*>(p) = v;
  }
};
template <typename T16>
struct Quad16 {
  static __device__ __forceinline__ float4 load(const T16* p) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const T16* h = reinterpret_cast<const T16*>(&raw);
    return make_float4(to_float(h[0]), to_float(h[1]), to_float(h[2]), to_float(h[3]));
  }
  static __device__ __forceinline__ void store(T16* p, float4 v) {
    uint2 raw;
    T16* h = reinterpret_cast<T16*>(&raw);
    h[0] = from_float<T16>(v.x);
    h[1] = from_float<T16>(v.y);
    h[2] = from_float<T16>(v.z);
    h[3] = from_float<T16>(v.w);
    *reinterpret_cast<uint2*>(p) = raw;
  }
};
template <>
struct Quad<__nv_bfloat16> : Quad16<__nv_bfloat16> {};
template <>
struct Quad<__half> : Quad16<__half> {};

// Four elements of a row of any ElemType (see load_any).
__device__ __forceinline__ float4 load_quad_any(const void* p, ElemType type, int64_t i) {
  switch (type) {
    case ElemType::f32:
      return Quad<float>::load(static_cast<const float*>(p) + i);
    case ElemType::f16:
      return Quad<__half>::load(static_cast<const __half*>(p) + i);
    default:
      return Quad<__nv_bfloat16>::load(static_cast<const __nv_bfloat16*>(p) + i);
  }
}

// norm_modulate_kernel with 16-byte loads: dim % 4 == 0 and every row/vector 16-byte aligned
// (the launcher checks). Same arithmetic order per element as the scalar kernel. Each quad is
// loaded, updated and stored before the next one's loads: issuing every load of the row first
// (with __restrict__) measured 15% slower on the H100 (13.8 -> 15.9 ms per balanced block).
// The block has blockDim.x threads, a multiple of 32 from kMinNormThreads to kThreads (the
// launcher picks it: norm_threads()); a thread owns quads threadIdx.x + k * blockDim.x.
constexpr int kMinNormThreads = 128;
template <typename ResT, typename OutT, bool kFp8 = false>
__global__ void __launch_bounds__(kThreads) norm_modulate_vec4_kernel(NormModulateArgs a) {
  constexpr int kQuads = static_cast<int>(kMaxRowDim / 4 / kMinNormThreads);
  const int threads = static_cast<int>(blockDim.x);
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const int64_t frame = row / a.tokens_per_frame;
  const int quads = static_cast<int>(a.dim / 4);
  float* x = a.x + row * a.dim;
  const ResT* residual = a.residual ? static_cast<const ResT*>(a.residual) + row * a.dim : nullptr;
  const float* gate = a.gate ? a.gate + frame * a.gate_stride : nullptr;
  const float hint_scale = a.hint ? *a.hint_scale : 0.f;
  OutT* out = static_cast<OutT*>(a.out) + row * a.dim;

  float4 v[kQuads];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kQuads; ++k) {
    const int q = threadIdx.x + k * threads;
    float4 xi = make_float4(0.f, 0.f, 0.f, 0.f);
    if (q < quads) {
      xi = Quad<float>::load(x + 4 * q);
      if (a.hint) {
        const float4 h = load_quad_any(a.hint, a.hint_type, row * a.dim + 4 * q);
        xi = make_float4(add_hint(xi.x, h.x, hint_scale), add_hint(xi.y, h.y, hint_scale),
                         add_hint(xi.z, h.z, hint_scale), add_hint(xi.w, h.w, hint_scale));
      }
      if (residual) {
        const float4 y = Quad<ResT>::load(residual + 4 * q);
        if (gate) {
          const float4 g = Quad<float>::load(gate + 4 * q);
          xi = make_float4(xi.x + y.x * g.x, xi.y + y.y * g.y, xi.z + y.z * g.z, xi.w + y.w * g.w);
        } else {
          xi = make_float4(xi.x + y.x, xi.y + y.y, xi.z + y.z, xi.w + y.w);
        }
      }
      if (residual || a.hint) Quad<float>::store(x + 4 * q, xi);
      if constexpr (!kFp8)
        if (!a.normalize) Quad<OutT>::store(out + 4 * q, xi);
      if (a.settled) Quad<OutT>::store(static_cast<OutT*>(a.settled) + row * a.dim + 4 * q, xi);
    }
    v[k] = xi;
    sum += (xi.x + xi.y) + (xi.z + xi.w);
  }
  if (!a.normalize) return;
  const float mean = block_sum(sum, smem) / static_cast<float>(a.dim);
  float squares = 0.f;
#pragma unroll
  for (int k = 0; k < kQuads; ++k) {
    const int q = threadIdx.x + k * threads;
    if (q < quads) {
      const float dx = v[k].x - mean, dy = v[k].y - mean, dz = v[k].z - mean, dw = v[k].w - mean;
      squares += (dx * dx + dy * dy) + (dz * dz + dw * dw);
    }
  }
  const float rstd = rsqrtf(block_sum(squares, smem) / static_cast<float>(a.dim) + a.eps);

  const float* shift = a.shift ? a.shift + frame * a.frame_stride : nullptr;
  const float* scale = a.scale ? a.scale + frame * a.frame_stride : nullptr;
  float amax = 0.f;
#pragma unroll
  for (int k = 0; k < kQuads; ++k) {
    const int q = threadIdx.x + k * threads;
    if (q >= quads) continue;
    float n[4] = {(v[k].x - mean) * rstd, (v[k].y - mean) * rstd, (v[k].z - mean) * rstd,
                  (v[k].w - mean) * rstd};
    if (scale) {
      const float4 sc = Quad<float>::load(scale + 4 * q), sh = Quad<float>::load(shift + 4 * q);
      n[0] = n[0] * (1.f + sc.x) + sh.x;
      n[1] = n[1] * (1.f + sc.y) + sh.y;
      n[2] = n[2] * (1.f + sc.z) + sh.z;
      n[3] = n[3] * (1.f + sc.w) + sh.w;
    } else if (a.weight) {
      const float4 w = Quad<float>::load(a.weight + 4 * q), b = Quad<float>::load(a.bias + 4 * q);
      n[0] = n[0] * w.x + b.x;
      n[1] = n[1] * w.y + b.y;
      n[2] = n[2] * w.z + b.z;
      n[3] = n[3] * w.w + b.w;
    }
    if constexpr (kFp8) {
      v[k] = make_float4(round_to<OutT>(n[0]), round_to<OutT>(n[1]), round_to<OutT>(n[2]),
                         round_to<OutT>(n[3]));
      amax = fmaxf(fmaxf(amax, fmaxf(fabsf(v[k].x), fabsf(v[k].y))),
                   fmaxf(fabsf(v[k].z), fabsf(v[k].w)));
    } else {
      Quad<OutT>::store(out + 4 * q, make_float4(n[0], n[1], n[2], n[3]));
    }
  }
  if constexpr (kFp8) {
    const float row_scale = fp8_row_scale(amax, smem);
    const float inverse = 1.f / row_scale;
    __nv_fp8_e4m3* fp8_row = static_cast<__nv_fp8_e4m3*>(a.out) + row * a.dim;
#pragma unroll
    for (int k = 0; k < kQuads; ++k) {
      const int q = threadIdx.x + k * threads;
      if (q >= quads) continue;
      uint32_t packed;
      __nv_fp8_e4m3* h = reinterpret_cast<__nv_fp8_e4m3*>(&packed);
      h[0] = __nv_fp8_e4m3(v[k].x * inverse);
      h[1] = __nv_fp8_e4m3(v[k].y * inverse);
      h[2] = __nv_fp8_e4m3(v[k].z * inverse);
      h[3] = __nv_fp8_e4m3(v[k].w * inverse);
      *reinterpret_cast<uint32_t*>(fp8_row + 4 * q) = packed;
    }
    if (threadIdx.x == 0) a.fp8_scales[row] = row_scale;
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool can_vectorize(const NormModulateArgs& a) {
  return a.dim % 4 == 0 && a.frame_stride % 4 == 0 && a.gate_stride % 4 == 0 && aligned16(a.x) &&
         aligned16(a.residual) && aligned16(a.gate) && aligned16(a.shift) && aligned16(a.scale) &&
         aligned16(a.weight) && aligned16(a.bias) && aligned16(a.out) && aligned16(a.hint) &&
         aligned16(a.settled);
}

template <typename T>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
};
template <>
struct Pair<__half> {
  using type = __half2;
};

// Writes the pair (x, y), already rounded to T, at `at`: as T, or (kFp8) as float8_e4m3fn with
// saturation at +-448 (round to nearest even: what KvCache's clamp-then-convert stores).
template <typename T, bool kFp8>
__device__ __forceinline__ void store_pair(void* at, float x, float y) {
  using T2 = typename Pair<T>::type;
  if constexpr (kFp8) {
    __nv_fp8_e4m3* out = static_cast<__nv_fp8_e4m3*>(at);
    out[0] = __nv_fp8_e4m3(x);
    out[1] = __nv_fp8_e4m3(y);
  } else {
    T2 o;
    o.x = from_float<T>(x);
    o.y = from_float<T>(y);
    *static_cast<T2*>(at) = o;
  }
}

template <typename T, bool kFp8Out>
__global__ void __launch_bounds__(kThreads) rms_rope_kernel(RmsRopeArgs a) {
  using T2 = typename Pair<T>::type;
  using O = std::conditional_t<kFp8Out, __nv_fp8_e4m3, T>;
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const int pairs = static_cast<int>(a.heads * a.head_dim / 2);
  const int half_head = static_cast<int>(a.head_dim / 2);
  const T2* in = reinterpret_cast<const T2*>(static_cast<const T*>(a.in) + row * a.in_stride);
  const T2* weight = static_cast<const T2*>(a.weight);

  float re[kPerThread / 2], im[kPerThread / 2];
  float squares = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread / 2; ++k) {
    const int p = threadIdx.x + k * kThreads;
    re[k] = im[k] = 0.f;
    if (p < pairs) {
      const T2 xy = in[p];
      re[k] = to_float(xy.x);
      im[k] = to_float(xy.y);
      squares += re[k] * re[k] + im[k] * im[k];
    }
  }
  O* out_row = static_cast<O*>(a.out) + row * a.out_row_stride;
  if (a.copy_in) {
    // The pass-through row (values into the KV cache), read and written while the norm reduces.
    const T2* copy_in =
        reinterpret_cast<const T2*>(static_cast<const T*>(a.copy_in) + row * a.in_stride);
    O* copy_row = static_cast<O*>(a.copy_out) + row * a.out_row_stride;
#pragma unroll
    for (int k = 0; k < kPerThread / 2; ++k) {
      const int p = threadIdx.x + k * kThreads;
      if (p >= pairs) continue;
      const int head = p / half_head;
      const int j = p - head * half_head;
      O* at = copy_row + head * a.out_head_stride + 2 * j;
      if constexpr (kFp8Out)
        store_pair<T, true>(at, to_float(copy_in[p].x), to_float(copy_in[p].y));
      else
        *reinterpret_cast<T2*>(at) = copy_in[p];
    }
  }
  const float rinv = rsqrtf(block_sum(squares, smem) / static_cast<float>(2 * pairs) + a.eps);

#pragma unroll
  for (int k = 0; k < kPerThread / 2; ++k) {
    const int p = threadIdx.x + k * kThreads;
    if (p >= pairs) continue;
    const T2 w = weight[p];
    float nre = round_to<T>(round_to<T>(re[k] * rinv) * to_float(w.x));
    float nim = round_to<T>(round_to<T>(im[k] * rinv) * to_float(w.y));
    const int head = p / half_head;
    const int j = p - head * half_head;
    if (a.cos) {
      const float c = a.cos[row * half_head + j];
      const float s = a.sin[row * half_head + j];
      const float rotated_re = __fsub_rn(__fmul_rn(nre, c), __fmul_rn(nim, s));
      const float rotated_im = __fadd_rn(__fmul_rn(nre, s), __fmul_rn(nim, c));
      nre = rotated_re;
      nim = rotated_im;
    }
    // Rounded to T first: the FP8 value is the one the 16-bit key would have been converted to.
    store_pair<T, kFp8Out>(out_row + head * a.out_head_stride + 2 * j, round_to<T>(nre),
                           round_to<T>(nim));
  }
}

// ---- RMSNorm+RoPE with one warp per row. rms_rope_kernel above spends its time in two block
// barriers per row and 4-byte loads (~45 % of the H100's memory bandwidth in the DiT). Here a
// warp owns a row: 16-byte loads, shuffle reductions, no shared memory, four rows per thread
// block. Same arithmetic per element; only the order of the row's sum of squares differs.
// Measured on an H100 (balanced, per block): 12.1 -> 10.4 ms. The same layout for
// norm_modulate was slower (15.8 -> 18.1 ms; not for the loads waiting on aliasing stores, as
// first thought: the block kernel with every load issued first was slower too, see
// norm_modulate_vec4_kernel), so LayerNorm keeps a block per row. ----
constexpr int kWarpRowThreads = 128;
constexpr int kRowsPerWarpBlock = kWarpRowThreads / 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Eight 16-bit values held in 16 bytes as floats.
template <typename T>
__device__ __forceinline__ void unpack_octet(const uint4& raw, float (&f)[8]) {
  const T* h = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = to_float(h[i]);
}

// Eight consecutive 16-bit values (one 16-byte load) as floats.
template <typename T>
__device__ __forceinline__ void load_octet(const T* p, float (&f)[8]) {
  unpack_octet<T>(*reinterpret_cast<const uint4*>(p), f);
}

// Stores eight values (already rounded to T) as T, or (kFp8) as float8_e4m3fn with saturation:
// one 16- (8-) byte store where `vector`, else pair by pair.
template <typename T, bool kFp8>
__device__ __forceinline__ void store_octet(void* at, const float (&v)[8], bool vector) {
  if (!vector) {
    using O = std::conditional_t<kFp8, __nv_fp8_e4m3, T>;
#pragma unroll
    for (int i = 0; i < 8; i += 2) store_pair<T, kFp8>(static_cast<O*>(at) + i, v[i], v[i + 1]);
    return;
  }
  if constexpr (kFp8) {
    uint2 raw;
    auto* codes = reinterpret_cast<__nv_fp8x2_storage_t*>(&raw);
    // Two values an instruction, the bits __nv_fp8_e4m3(float) gives each (saturating, nearest).
#pragma unroll
    for (int i = 0; i < 4; ++i)
      codes[i] =
          __nv_cvt_float2_to_fp8x2(make_float2(v[2 * i], v[2 * i + 1]), __NV_SATFINITE, __NV_E4M3);
    *static_cast<uint2*>(at) = raw;
  } else {
    uint4 raw;
    T* h = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) h[i] = from_float<T>(v[i]);
    *static_cast<uint4*>(at) = raw;
  }
}

// rms_rope_kernel with a warp per row: lane l holds the row's 8-element chunks l, l + 32, ...
// (kChunks of them at most). `vector_out`: out and copy_out take 8-element stores.
template <typename T, bool kFp8Out, int kChunks>
__global__ void __launch_bounds__(kWarpRowThreads)
    rms_rope_warp_kernel(RmsRopeArgs a, bool vector_out) {
  using O = std::conditional_t<kFp8Out, __nv_fp8_e4m3, T>;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + (threadIdx.x >> 5);
  if (row >= a.rows) return;  // the whole warp: shuffles below see every lane of a live row
  const int head_dim = static_cast<int>(a.head_dim);
  const int dim = static_cast<int>(a.heads) * head_dim;
  const int chunks = dim / 8;
  const T* in = static_cast<const T*>(a.in) + row * a.in_stride;

  // The row as loaded (eight values of T per chunk; half the registers of floats, so more rows
  // resident per SM), unpacked where used.
  uint4 held[kChunks];
  float squares = 0.f;
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = lane + 32 * k;
    if (c >= chunks) continue;
    held[k] = *reinterpret_cast<const uint4*>(in + 8 * c);
    float x[8];
    unpack_octet<T>(held[k], x);
#pragma unroll
    for (int i = 0; i < 8; i += 2) squares += x[i] * x[i] + x[i + 1] * x[i + 1];
  }
  O* out_row = static_cast<O*>(a.out) + row * a.out_row_stride;
  if (a.copy_in) {
    // The pass-through row (values into the KV cache), while the sum travels. Every chunk is
    // loaded before the first store: the compiler cannot prove the stores miss the input, so
    // a load after a store would wait its turn (read-only loads, __ldg, are free of that too).
    const T* copy_in = static_cast<const T*>(a.copy_in) + row * a.in_stride;
    O* copy_row = static_cast<O*>(a.copy_out) + row * a.out_row_stride;
    uint4 copied[kChunks];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int c = lane + 32 * k;
      if (c < chunks) copied[k] = __ldg(reinterpret_cast<const uint4*>(copy_in + 8 * c));
    }
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int c = lane + 32 * k;
      if (c >= chunks) continue;
      const int head = (8 * c) / head_dim;
      O* at = copy_row + head * a.out_head_stride + (8 * c - head * head_dim);
      if (!kFp8Out && vector_out) {
        *reinterpret_cast<uint4*>(at) = copied[k];
      } else {
        float v[8];
        unpack_octet<T>(copied[k], v);
        store_octet<T, kFp8Out>(at, v, vector_out);
      }
    }
  }
  const float rinv = rsqrtf(warp_sum(squares) / static_cast<float>(dim) + a.eps);
  const T* weight = static_cast<const T*>(a.weight);
  const int half_head = head_dim / 2;
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = lane + 32 * k;
    if (c >= chunks) continue;
    const int head = (8 * c) / head_dim;
    const int within = 8 * c - head * head_dim;
    float x[8], w[8], n[8];
    unpack_octet<T>(held[k], x);
    // Weights and angles through read-only loads: not held behind the stores of the chunks
    // before (see the copy above).
    unpack_octet<T>(__ldg(reinterpret_cast<const uint4*>(weight + 8 * c)), w);
#pragma unroll
    for (int i = 0; i < 8; ++i) n[i] = round_to<T>(round_to<T>(x[i] * rinv) * w[i]);
    if (a.cos) {
      // The chunk's four pairs rotate by four consecutive angles of this row (16-byte aligned).
      const float4 c4 =
          __ldg(reinterpret_cast<const float4*>(a.cos + row * half_head + within / 2));
      const float4 s4 =
          __ldg(reinterpret_cast<const float4*>(a.sin + row * half_head + within / 2));
      const float cs[4] = {c4.x, c4.y, c4.z, c4.w}, sn[4] = {s4.x, s4.y, s4.z, s4.w};
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        const float re = n[2 * t], im = n[2 * t + 1];
        n[2 * t] = __fsub_rn(__fmul_rn(re, cs[t]), __fmul_rn(im, sn[t]));
        n[2 * t + 1] = __fadd_rn(__fmul_rn(re, sn[t]), __fmul_rn(im, cs[t]));
      }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) n[i] = round_to<T>(n[i]);
    store_octet<T, kFp8Out>(out_row + head * a.out_head_stride + within, n, vector_out);
  }
}

unsigned warp_row_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock);
}

// u in GELU's tanh approximation, 0.5 v (1 + tanh(u)) with u = sqrt(2 / pi) (v + 0.044715 v^3).
__device__ __forceinline__ float gelu_tanh_argument(float v) {
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kKappa = 0.044715f;
  return kBeta * (v + kKappa * v * v * v);
}

// GELU (tanh approximation, as ATen's gelu(approximate="tanh")) in float, rounded to T like the
// separate 16-bit GELU output it replaces.
template <typename T>
__device__ __forceinline__ float gelu_tanh_rounded(float v) {
  return round_to<T>(0.5f * v * (1.f + tanhf(gelu_tanh_argument(v))));
}

// The same GELU through the logistic function: 0.5 v (1 + tanh(u)) = v / (1 + e^(-2u)), one
// exp2 and one fast division (two special-function ops) where tanhf takes ~30 instructions
// and a branch that diverges inside a warp: the FFN's GELU + FP8 quantisation, 8960 values a
// row, was bound by that arithmetic rather than by memory. A few ulp of float32 from the exact
// value (no cancellation in 1 + tanh(u) for negative v, unlike the tanh form), so after the
// rounding to T it differs from tanhf's in a rare last bit. __fdividef gives 0 where
// 1 + e^(-2u) passes 2^126 (v below about -9.5, where GELU is under 1e-37): an FP8 code of 0
// either way (the tanh form is -0 already from about -5.1, where tanhf reaches -1).
template <typename T>
__device__ __forceinline__ float gelu_logistic_rounded(float v) {
  constexpr float kMinusTwoLog2e = -2.8853900817779268f;  // e^(-2u) = 2^(-2 u log2(e))
  return round_to<T>(__fdividef(v, 1.f + exp2f(kMinusTwoLog2e * gelu_tanh_argument(v))));
}

// What the quantisation kernels apply to each value before quantising it.
enum class RowActivation { none, gelu_tanh, gelu_logistic };

template <typename T, RowActivation kAct>
__device__ __forceinline__ float activate(float v) {
  if constexpr (kAct == RowActivation::gelu_tanh) return gelu_tanh_rounded<T>(v);
  if constexpr (kAct == RowActivation::gelu_logistic) return gelu_logistic_rounded<T>(v);
  return v;
}

template <typename T, RowActivation kAct>
__global__ void __launch_bounds__(kThreads)
    quantize_fp8_rows_kernel(const T* x, int64_t dim, __nv_fp8_e4m3* q, float* scales) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * dim;
  auto load = [&](int64_t i) { return activate<T, kAct>(to_float(in[i])); };
  float amax = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) amax = fmaxf(amax, fabsf(load(i)));
  const float scale = fp8_row_scale(amax, smem);
  const float inverse = 1.f / scale;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads)
    q[row * dim + i] = __nv_fp8_e4m3(load(i) * inverse);
  if (threadIdx.x == 0) scales[row] = scale;
}

// Two values of T packed in 32 bits (a in the low half) and back; packing values already
// representable in T is exact, so pack(round_to(a), round_to(b)) == pack(a, b).
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float a, float b) {
  typename Pair<T>::type p;
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    p = __floats2bfloat162_rn(a, b);
  else
    p = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&p);
}
template <typename T>
__device__ __forceinline__ float2 unpack_pair(uint32_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return make_float2(__uint_as_float(bits << 16), __uint_as_float(bits & 0xffff0000u));
  else
    return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}

// quantize_fp8_rows_kernel with the row in registers: 16-byte loads of eight 16-bit values, the
// GELU computed once per element (the kernel above reads each element twice, with two-byte loads,
// and computes its GELU twice), 8-byte FP8 stores. The row is held as T (what the activation
// rounds to anyway: half the registers of floats, so more rows resident per SM) and converted two
// values an instruction. Same arithmetic per element, so the same bits.
// dim % 8 == 0, x 16-byte and q 8-byte aligned, dim <= 8 * kThreads * kChunks.
template <typename T, RowActivation kAct, int kChunks>
__global__ void __launch_bounds__(kThreads)
    quantize_fp8_rows_vector_kernel(const T* x, int64_t dim, __nv_fp8_e4m3* q, float* scales) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * dim;
  const int chunks = static_cast<int>(dim / 8);
  uint4 held[kChunks];  // eight values of T each
  float amax = 0.f;
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = threadIdx.x + k * kThreads;
    if (c >= chunks) continue;
    held[k] = *reinterpret_cast<const uint4*>(in + 8 * c);
    uint32_t* words = reinterpret_cast<uint32_t*>(&held[k]);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      float2 f = unpack_pair<T>(words[w]);
      if constexpr (kAct != RowActivation::none) {
        f = make_float2(activate<T, kAct>(f.x), activate<T, kAct>(f.y));
        words[w] = pack_pair<T>(f.x, f.y);
      }
      amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
    }
  }
  const float scale = fp8_row_scale(amax, smem);
  const float inverse = 1.f / scale;
  __nv_fp8_e4m3* out = q + row * dim;
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = threadIdx.x + k * kThreads;
    if (c >= chunks) continue;
    const uint32_t* words = reinterpret_cast<const uint32_t*>(&held[k]);
    uint2 raw;
    auto* codes = reinterpret_cast<__nv_fp8x2_storage_t*>(&raw);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float2 f = unpack_pair<T>(words[w]);
      // Saturating, round to nearest even: what __nv_fp8_e4m3(float) gives each value.
      codes[w] = __nv_cvt_float2_to_fp8x2(make_float2(f.x * inverse, f.y * inverse), __NV_SATFINITE,
                                          __NV_E4M3);
    }
    *reinterpret_cast<uint2*>(out + 8 * c) = raw;
  }
  if (threadIdx.x == 0) scales[row] = scale;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dequantize_int8_kernel(DequantInt8Args a) {
  const int64_t chunks_per_row = a.dim / 16;
  const int64_t total = a.heads * a.count * chunks_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / chunks_per_row, chunk = i - row * chunks_per_row;
    const int64_t head = row / a.count, token = row - head * a.count;
    const uint4 raw =
        *reinterpret_cast<const uint4*>(a.q + head * a.q_head_stride + token * a.dim + chunk * 16);
    const float scale = a.scale[head * a.scale_head_stride + token];
    const int8_t* q = reinterpret_cast<const int8_t*>(&raw);
    T* out = static_cast<T*>(a.out) + row * a.dim + chunk * 16;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      uint4 packed;
      T* h = reinterpret_cast<T*>(&packed);
#pragma unroll
      for (int j = 0; j < 8; ++j) h[j] = from_float<T>(static_cast<float>(q[half * 8 + j]) * scale);
      reinterpret_cast<uint4*>(out)[half] = packed;
    }
  }
}

// The vec4 kernel's block size: a.threads where it is a multiple of 32 in [kMinNormThreads,
// kThreads] that covers the row's quads (kQuads a thread at most), else kThreads.
unsigned norm_threads(const NormModulateArgs& a) {
  const int64_t quads = a.dim / 4, t = a.threads;
  const bool fits = t % 32 == 0 && t >= kMinNormThreads && t <= kThreads &&
                    quads <= t * static_cast<int64_t>(kMaxRowDim / 4 / kMinNormThreads);
  return static_cast<unsigned>(fits ? t : kThreads);
}

// The FP8 output (row-wise scales): the row rounded to the 16-bit out_type first.
template <typename ResT, typename RoundT>
void launch_norm_modulate_fp8(const NormModulateArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.rows));
  // The FP8 row takes 4-byte stores: dim % 4 == 0 (can_vectorize) and a 4-byte aligned base.
  if (can_vectorize(a))
    norm_modulate_vec4_kernel<ResT, RoundT, true><<<grid, norm_threads(a), 0, stream>>>(a);
  else
    norm_modulate_kernel<ResT, RoundT, true><<<grid, kThreads, 0, stream>>>(a);
}

template <typename ResT>
cudaError_t launch_norm_modulate_out(const NormModulateArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.rows));
  const bool vec4 = can_vectorize(a);
  if (a.fp8_scales) {
    if (!a.normalize) return cudaErrorInvalidValue;
    switch (a.out_type) {
      case ElemType::bf16:
        launch_norm_modulate_fp8<ResT, __nv_bfloat16>(a, stream);
        return cudaGetLastError();
      case ElemType::f16:
        launch_norm_modulate_fp8<ResT, __half>(a, stream);
        return cudaGetLastError();
      case ElemType::f32:
        return cudaErrorInvalidValue;
    }
  }
  switch (a.out_type) {
    case ElemType::bf16:
      if (vec4)
        norm_modulate_vec4_kernel<ResT, __nv_bfloat16><<<grid, norm_threads(a), 0, stream>>>(a);
      else
        norm_modulate_kernel<ResT, __nv_bfloat16><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f16:
      if (vec4)
        norm_modulate_vec4_kernel<ResT, __half><<<grid, norm_threads(a), 0, stream>>>(a);
      else
        norm_modulate_kernel<ResT, __half><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f32:
      if (vec4)
        norm_modulate_vec4_kernel<ResT, float><<<grid, norm_threads(a), 0, stream>>>(a);
      else
        norm_modulate_kernel<ResT, float><<<grid, kThreads, 0, stream>>>(a);
      break;
  }
  return cudaGetLastError();
}

// The warp kernel's needs: 8-element chunks inside one head, 16-byte aligned input, value,
// weight and angle rows.
bool rms_rope_fits_warp(const RmsRopeArgs& a) {
  const int64_t dim = a.heads * a.head_dim;
  const bool angles = a.cos == nullptr || (aligned16(a.cos) && aligned16(a.sin));
  return a.head_dim % 8 == 0 && dim <= kMaxRowDim && a.in_stride % 8 == 0 && aligned16(a.in) &&
         aligned16(a.copy_in) && aligned16(a.weight) && angles;
}

// Whether out (and copy_out) take 8-element stores: 16 bytes of 16-bit values, 8 of FP8.
bool rms_rope_vector_out(const RmsRopeArgs& a) {
  const uintptr_t bytes = a.fp8_out ? 8 : 16;
  auto aligned = [&](const void* p) {
    return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
  };
  return a.out_row_stride % 8 == 0 && a.out_head_stride % 8 == 0 && aligned(a.out) &&
         aligned(a.copy_out);
}

// The warp kernel with registers for the row's width: the 1.3B's 1536 (6 chunks per lane), or
// up to kMaxRowDim (8).
template <typename T, bool kFp8Out>
void launch_rms_rope_warp_for_width(const RmsRopeArgs& a, bool vector_out, cudaStream_t stream) {
  constexpr int kSmall = 6;
  constexpr int kLarge = static_cast<int>(kMaxRowDim / 8 / 32);
  const dim3 grid(warp_row_blocks(a.rows));
  if (a.heads * a.head_dim <= 8 * 32 * kSmall)
    rms_rope_warp_kernel<T, kFp8Out, kSmall><<<grid, kWarpRowThreads, 0, stream>>>(a, vector_out);
  else
    rms_rope_warp_kernel<T, kFp8Out, kLarge><<<grid, kWarpRowThreads, 0, stream>>>(a, vector_out);
}

template <typename T>
cudaError_t launch_rms_rope_warp(const RmsRopeArgs& a, cudaStream_t stream) {
  const bool vector_out = rms_rope_vector_out(a);
  if (a.fp8_out)
    launch_rms_rope_warp_for_width<T, true>(a, vector_out, stream);
  else
    launch_rms_rope_warp_for_width<T, false>(a, vector_out, stream);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_norm_modulate(const NormModulateArgs& a, cudaStream_t stream) {
  if (a.dim < 1 || a.dim > kMaxRowDim || a.rows < 1 || a.tokens_per_frame < 1 ||
      (a.hint == nullptr) != (a.hint_scale == nullptr))
    return cudaErrorInvalidValue;
  switch (a.residual_type) {
    case ElemType::bf16:
      return launch_norm_modulate_out<__nv_bfloat16>(a, stream);
    case ElemType::f16:
      return launch_norm_modulate_out<__half>(a, stream);
    case ElemType::f32:
      return launch_norm_modulate_out<float>(a, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_rms_rope(const RmsRopeArgs& a, cudaStream_t stream) {
  if (a.heads * a.head_dim > kMaxRowDim || a.head_dim % 2 != 0 || a.rows < 1 ||
      (a.copy_in == nullptr) != (a.copy_out == nullptr))
    return cudaErrorInvalidValue;
  if (a.warp_per_row && rms_rope_fits_warp(a)) {
    switch (a.type) {
      case ElemType::bf16:
        return launch_rms_rope_warp<__nv_bfloat16>(a, stream);
      case ElemType::f16:
        return launch_rms_rope_warp<__half>(a, stream);
      case ElemType::f32:
        return cudaErrorInvalidValue;
    }
  }
  const dim3 grid(static_cast<unsigned>(a.rows));
  switch (a.type) {
    case ElemType::bf16:
      if (a.fp8_out)
        rms_rope_kernel<__nv_bfloat16, true><<<grid, kThreads, 0, stream>>>(a);
      else
        rms_rope_kernel<__nv_bfloat16, false><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f16:
      if (a.fp8_out)
        rms_rope_kernel<__half, true><<<grid, kThreads, 0, stream>>>(a);
      else
        rms_rope_kernel<__half, false><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f32:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

namespace {

constexpr int kRmsSiluWarps = 8;  // rows per thread block

template <typename T>
__global__ void rms_silu_rows_kernel(RmsSiluArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRmsSiluWarps + threadIdx.x / 32;
  if (row >= a.rows) return;
  const int lane = threadIdx.x % 32;
  const T* x = static_cast<const T*>(a.in) + row * a.in_stride;
  T* y = static_cast<T*>(a.out) + row * a.out_stride;
  const T* gamma = static_cast<const T*>(a.gamma);
  const T* bias = static_cast<const T*>(a.bias);
  auto value = [&](int64_t i) {
    return bias ? round_to<T>(to_float(x[i]) + to_float(bias[i])) : to_float(x[i]);
  };
  float squares = 0.0f;
  for (int64_t i = lane; i < a.dim; i += 32) {
    const float v = value(i);
    squares += v * v;
  }
  for (int o = 16; o > 0; o >>= 1) squares += __shfl_xor_sync(0xffffffffu, squares, o);
  const float rstd = rsqrtf(squares / static_cast<float>(a.dim) + a.eps);
  // The row is read again from L1/L2, not from memory: at most a few hundred bytes.
  for (int64_t i = lane; i < a.dim; i += 32) {
    const float n = round_to<T>(to_float(gamma[i]) * (rstd * value(i)));
    y[i] = from_float<T>(n / (1.0f + expf(-n)));
  }
}

// Eight 16-bit values moved by one 16-byte load or store (`raw()` aliases them).
template <typename T>
struct alignas(16) Pack8 {
  T v[8];
  __device__ __forceinline__ uint4& raw() { return *reinterpret_cast<uint4*>(v); }
};

constexpr int kRowThreads = 16;  // threads sharing a row in the vector kernel
constexpr int kVecRows = 16;     // rows per 256-thread block

// The vector form: a row's 16-byte vectors spread over 16 threads, at most kVecs each, kept in
// registers between the sum of squares and the output.
template <typename T, int kVecs>
__global__ void rms_silu_vec_kernel(RmsSiluArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kVecRows + threadIdx.x / kRowThreads;
  const int lane = threadIdx.x % kRowThreads;
  const bool live = row < a.rows;
  const int vecs = static_cast<int>(a.dim / 8);
  const T* x = static_cast<const T*>(a.in) + row * a.in_stride;
  float v[kVecs][8];
  float squares = 0.0f;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int c = lane + j * kRowThreads;
    if (!live || c >= vecs) continue;
    Pack8<T> in, b;
    in.raw() = *reinterpret_cast<const uint4*>(x + c * 8);
    if (a.bias) b.raw() = reinterpret_cast<const uint4*>(a.bias)[c];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[j][k] = a.bias ? round_to<T>(to_float(in.v[k]) + to_float(b.v[k])) : to_float(in.v[k]);
      squares += v[j][k] * v[j][k];
    }
  }
  // Every lane of the warp takes part (two rows a warp, 16 lanes each).
  for (int o = kRowThreads / 2; o > 0; o >>= 1) squares += __shfl_xor_sync(0xffffffffu, squares, o);
  if (!live) return;
  const float rstd = rsqrtf(squares / static_cast<float>(a.dim) + a.eps);
  T* y = static_cast<T*>(a.out) + row * a.out_stride;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int c = lane + j * kRowThreads;
    if (c >= vecs) continue;
    Pack8<T> g, out;
    g.raw() = reinterpret_cast<const uint4*>(a.gamma)[c];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float n = round_to<T>(to_float(g.v[k]) * (rstd * v[j][k]));
      out.v[k] = from_float<T>(n / (1.0f + expf(-n)));
    }
    *reinterpret_cast<uint4*>(y + c * 8) = out.raw();
  }
}

template <typename T>
__global__ void bias_residual_kernel(BiasResidualArgs a) {
  const int64_t vecs = a.dim / 8;
  const int64_t total = a.rows * vecs;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % vecs;
    Pack8<T> x, b, s, sb, out;
    x.raw() = reinterpret_cast<const uint4*>(a.x)[i];
    b.raw() = reinterpret_cast<const uint4*>(a.bias)[c];
    s.raw() = reinterpret_cast<const uint4*>(a.skip)[i];
    if (a.skip_bias) sb.raw() = reinterpret_cast<const uint4*>(a.skip_bias)[c];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float skip =
          a.skip_bias ? round_to<T>(to_float(s.v[k]) + to_float(sb.v[k])) : to_float(s.v[k]);
      out.v[k] = from_float<T>(round_to<T>(to_float(x.v[k]) + to_float(b.v[k])) + skip);
    }
    reinterpret_cast<uint4*>(a.out)[i] = out.raw();
  }
}

template <typename T>
cudaError_t launch_rms_silu(const RmsSiluArgs& a, cudaStream_t stream) {
  const int64_t vecs = a.dim / 8;
  const bool vector = a.dim % 8 == 0 && a.in_stride % 8 == 0 && a.out_stride % 8 == 0 &&
                      vecs <= 4 * kRowThreads && aligned16(a.in) && aligned16(a.out) &&
                      aligned16(a.gamma) && aligned16(a.bias);
  if (!vector) {
    const auto blocks = static_cast<unsigned>((a.rows + kRmsSiluWarps - 1) / kRmsSiluWarps);
    rms_silu_rows_kernel<T><<<blocks, kRmsSiluWarps * 32, 0, stream>>>(a);
    return cudaGetLastError();
  }
  const auto blocks = static_cast<unsigned>((a.rows + kVecRows - 1) / kVecRows);
  const unsigned threads = kVecRows * kRowThreads;
  switch ((vecs + kRowThreads - 1) / kRowThreads) {
    case 1:
      rms_silu_vec_kernel<T, 1><<<blocks, threads, 0, stream>>>(a);
      break;
    case 2:
      rms_silu_vec_kernel<T, 2><<<blocks, threads, 0, stream>>>(a);
      break;
    case 3:
      rms_silu_vec_kernel<T, 3><<<blocks, threads, 0, stream>>>(a);
      break;
    default:
      rms_silu_vec_kernel<T, 4><<<blocks, threads, 0, stream>>>(a);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_rms_silu_rows(const RmsSiluArgs& a, cudaStream_t stream) {
  if (a.rows < 1 || a.dim < 1 || a.in_stride < a.dim || a.out_stride < a.dim)
    return cudaErrorInvalidValue;
  switch (a.type) {
    case ElemType::bf16:
      return launch_rms_silu<__nv_bfloat16>(a, stream);
    case ElemType::f16:
      return launch_rms_silu<__half>(a, stream);
    case ElemType::f32:
      return cudaErrorInvalidValue;
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_bias_residual_add(const BiasResidualArgs& a, cudaStream_t stream) {
  if (a.rows < 1 || a.dim < 8 || a.dim % 8 != 0 || !a.x || !a.bias || !a.skip || !a.out ||
      !aligned16(a.x) || !aligned16(a.bias) || !aligned16(a.skip) || !aligned16(a.skip_bias) ||
      !aligned16(a.out))
    return cudaErrorInvalidValue;
  const int64_t total = a.rows * (a.dim / 8);
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65535 * 8));
  switch (a.type) {
    case ElemType::bf16:
      bias_residual_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(a);
      break;
    case ElemType::f16:
      bias_residual_kernel<__half><<<blocks, 256, 0, stream>>>(a);
      break;
    case ElemType::f32:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_dequantize_int8(const DequantInt8Args& a, cudaStream_t stream) {
  if (a.dim % 16 != 0 || a.q_head_stride % 16 != 0 || !aligned16(a.q) || !aligned16(a.out) ||
      a.heads < 1 || a.count < 1)
    return cudaErrorInvalidValue;
  const int64_t total = a.heads * a.count * (a.dim / 16);
  const auto blocks =
      static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  switch (a.out_type) {
    case ElemType::bf16:
      dequantize_int8_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f16:
      dequantize_int8_kernel<__half><<<blocks, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f32:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

// The vector kernel with registers for the row: the FFN's 8960 (5 chunks per thread) and the
// hidden size's 1536 fit; rows up to 8 * kThreads * 8.
template <typename T, RowActivation kAct>
bool launch_quantize_rows_vector(const T* x, int64_t rows, int64_t dim, __nv_fp8_e4m3* out,
                                 float* scales, cudaStream_t stream) {
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 8 == 0 && dim % 8 == 0;
  const int64_t chunks = dim / 8;
  if (!aligned || chunks > 8 * kThreads) return false;
  const dim3 grid(static_cast<unsigned>(rows));
  if (chunks <= 2 * kThreads)
    quantize_fp8_rows_vector_kernel<T, kAct, 2><<<grid, kThreads, 0, stream>>>(x, dim, out, scales);
  else if (chunks <= 5 * kThreads)
    quantize_fp8_rows_vector_kernel<T, kAct, 5><<<grid, kThreads, 0, stream>>>(x, dim, out, scales);
  else
    quantize_fp8_rows_vector_kernel<T, kAct, 8><<<grid, kThreads, 0, stream>>>(x, dim, out, scales);
  return true;
}

template <RowActivation kAct>
void launch_quantize_rows(const void* x, ElemType type, int64_t rows, int64_t dim,
                          __nv_fp8_e4m3* out, float* scales, bool vector, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows));
  if (vector) {
    if (type == ElemType::bf16 &&
        launch_quantize_rows_vector<__nv_bfloat16, kAct>(static_cast<const __nv_bfloat16*>(x), rows,
                                                         dim, out, scales, stream))
      return;
    if (type == ElemType::f16 && launch_quantize_rows_vector<__half, kAct>(
                                     static_cast<const __half*>(x), rows, dim, out, scales, stream))
      return;
  }
  switch (type) {
    case ElemType::bf16:
      quantize_fp8_rows_kernel<__nv_bfloat16, kAct>
          <<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), dim, out, scales);
      break;
    case ElemType::f16:
      quantize_fp8_rows_kernel<__half, kAct>
          <<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(x), dim, out, scales);
      break;
    case ElemType::f32:
      quantize_fp8_rows_kernel<float, kAct>
          <<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), dim, out, scales);
      break;
  }
}

cudaError_t launch_quantize_fp8_rows(const void* x, ElemType type, int64_t rows, int64_t dim,
                                     void* q, float* scales, GeluForm gelu, cudaStream_t stream,
                                     bool vector) {
  if (rows < 1 || dim < 1) return cudaErrorInvalidValue;
  auto* out = static_cast<__nv_fp8_e4m3*>(q);
  switch (gelu) {
    case GeluForm::none:
      launch_quantize_rows<RowActivation::none>(x, type, rows, dim, out, scales, vector, stream);
      break;
    case GeluForm::tanh:
      launch_quantize_rows<RowActivation::gelu_tanh>(x, type, rows, dim, out, scales, vector,
                                                     stream);
      break;
    case GeluForm::logistic:
      launch_quantize_rows<RowActivation::gelu_logistic>(x, type, rows, dim, out, scales, vector,
                                                         stream);
      break;
  }
  return cudaGetLastError();
}

cudaError_t probe_kernels_on_current_device() {
  cudaFuncAttributes attributes{};
  return cudaFuncGetAttributes(&attributes, norm_modulate_kernel<float, float>);
}

}  // namespace longlive::kernels
