#pragma once
// cuDNN's FP8 (E4M3) flash attention forward through cudnn-frontend, for the FP8 presets.
//
// Measured on the H100 at the DiT's shapes (bench/fp8_attention_probe.py): 1.34x bf16 cuDNN
// attention for a denoising step (4680 queries over 18720 keys), 1.43x for a re-cache. On Hopper
// the output is E4M3 too (bf16 output needs Blackwell). Inputs are quantised with scale 1 and
// saturated at +-448: q and k come out of RMSNorm and v and the output are convex combinations of
// unit-scale projections, far inside E4M3's range; the softmax probabilities use the full range
// (scale 448). Built only when CMake finds cudnn-frontend (LONGLIVE_WITH_CUDNN_FE); available()
// says whether this build and device can run it.
#include <ATen/ATen.h>

namespace longlive::fp8_attention {

constexpr double kE4M3Max = 448.0;

// Built with cudnn-frontend, a CUDA device of compute capability >= 9.0 and cuDNN >= 9.1.
bool available();

// Saturating cast to float8_e4m3fn (scale 1), same shape and layout as `x`.
at::Tensor quantize(const at::Tensor& x);

// Whether cuDNN has an FP8 kernel for these inputs (builds and caches the plan; a refused shape is
// logged once and remembered). Same argument rules as attention().
bool supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// softmax(q k^T / sqrt(d)) v. q: [1, heads, Sq, d], k/v: [1, heads, Sk, d], float8_e4m3fn on
// CUDA, innermost dimension contiguous (other strides free: BSHD or BHSD views work). Returns
// [1, heads, Sq, d] float8_e4m3fn (BHSD). Graphs are built once per shape and layout and
// cached; CUDA-graph capturable after the first call for a shape. Error if the shape is not
// supported().
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace longlive::fp8_attention
