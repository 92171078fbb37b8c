// Fused row kernels of the DiT (see fused_kernels.h). One thread block per token row keeps the row
// in registers, so each kernel reads its inputs once and writes its outputs once: the plain ATen
// path makes 5-10 full passes over the [tokens, dim] float32 residual stream for the same work.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

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

template <typename ResT, typename OutT>
__global__ void __launch_bounds__(kThreads) norm_modulate_kernel(NormModulateArgs a) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const int64_t frame = row / a.tokens_per_frame;
  const int dim = static_cast<int>(a.dim);
  float* x = a.x + row * a.dim;
  const ResT* residual = a.residual ? static_cast<const ResT*>(a.residual) + row * a.dim : nullptr;
  const float* gate = a.gate ? a.gate + frame * a.gate_stride : nullptr;

  float v[kPerThread];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    float xi = 0.f;
    if (i < dim) {
      xi = x[i];
      if (residual) {
        const float y = to_float(residual[i]);
        xi = xi + (gate ? y * gate[i] : y);
        x[i] = xi;
      }
    }
    v[k] = xi;
    sum += xi;
  }
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

  OutT* out = static_cast<OutT*>(a.out) + row * a.dim;
  const float* shift = a.shift ? a.shift + frame * a.frame_stride : nullptr;
  const float* scale = a.scale ? a.scale + frame * a.frame_stride : nullptr;
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
      out[i] = from_float<OutT>(n);
    }
  }
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

template <typename T>
__global__ void __launch_bounds__(kThreads) rms_rope_kernel(RmsRopeArgs a) {
  using T2 = typename Pair<T>::type;
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
  const float rinv = rsqrtf(block_sum(squares, smem) / static_cast<float>(2 * pairs) + a.eps);

  T* out_row = static_cast<T*>(a.out) + row * a.out_row_stride;
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
    T2 o;
    o.x = from_float<T>(nre);
    o.y = from_float<T>(nim);
    *reinterpret_cast<T2*>(out_row + head * a.out_head_stride + 2 * j) = o;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    quantize_fp8_rows_kernel(const T* x, int64_t dim, __nv_fp8_e4m3* q, float* scales) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * dim;
  float amax = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) amax = fmaxf(amax, fabsf(to_float(in[i])));
  const float scale = fmaxf(block_max(amax, smem) / 448.f, 1e-12f);
  const float inverse = 1.f / scale;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads)
    q[row * dim + i] = __nv_fp8_e4m3(to_float(in[i]) * inverse);
  if (threadIdx.x == 0) scales[row] = scale;
}

template <typename ResT>
cudaError_t launch_norm_modulate_out(const NormModulateArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.rows));
  switch (a.out_type) {
    case ElemType::bf16:
      norm_modulate_kernel<ResT, __nv_bfloat16><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f16:
      norm_modulate_kernel<ResT, __half><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f32:
      norm_modulate_kernel<ResT, float><<<grid, kThreads, 0, stream>>>(a);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_norm_modulate(const NormModulateArgs& a, cudaStream_t stream) {
  if (a.dim < 1 || a.dim > kMaxRowDim || a.rows < 1 || a.tokens_per_frame < 1)
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
  if (a.heads * a.head_dim > kMaxRowDim || a.head_dim % 2 != 0 || a.rows < 1)
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(a.rows));
  switch (a.type) {
    case ElemType::bf16:
      rms_rope_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f16:
      rms_rope_kernel<__half><<<grid, kThreads, 0, stream>>>(a);
      break;
    case ElemType::f32:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_quantize_fp8_rows(const void* x, ElemType type, int64_t rows, int64_t dim,
                                     void* q, float* scales, cudaStream_t stream) {
  if (rows < 1 || dim < 1) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(rows));
  auto* out = static_cast<__nv_fp8_e4m3*>(q);
  switch (type) {
    case ElemType::bf16:
      quantize_fp8_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x),
                                                              dim, out, scales);
      break;
    case ElemType::f16:
      quantize_fp8_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(x), dim,
                                                              out, scales);
      break;
    case ElemType::f32:
      quantize_fp8_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), dim,
                                                              out, scales);
      break;
  }
  return cudaGetLastError();
}

}  // namespace longlive::kernels
