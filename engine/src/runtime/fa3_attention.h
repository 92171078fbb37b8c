#pragma once
// FlashAttention-3's Hopper forward kernel, the attention that AttentionBackend::automatic takes
// on sm_90 (ops::attention).
// Optional: built only when CMake finds FA3's sources (LONGLIVE_FA3_DIR, fetched by
// packaging/fetch_fa3.sh); it runs on sm_90 only (the kernel is sm_90a code: TMA, wgmma).
// Everywhere else the callers keep cuDNN's SDPA.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace longlive::fa3 {

// FA3's key tiles (tile_size_fwd_sm90, head dim 128, no mask): 176 keys in bf16, 224 in FP8.
constexpr int64_t kBf16KeyTile = 176, kFp8KeyTile = 224;

// How the query tiles (128 rows x one head) are laid over the SMs. FA3's persistent kernel
// (`whole`) deals every tile's whole key range to one SM; at the steady shape that is 37 x 12 =
// 444 tiles for 132 SMs, three full rounds and a fourth a third full. `split` cuts every tile's
// keys into `splits` parts (fp32 partials, then a combine kernel). `tail` runs the tiles of the
// full rounds whole and only the last round's tiles split, so that they fill one round
// (the default: balanced's steady block 252.0 -> 244.6 ms on an H200).
enum class Schedule { whole, split, tail };
struct Plan {
  Schedule schedule = Schedule::tail;
  // split: the parts of every row's keys. tail: the parts of the last round's tiles; 0 = as many
  // as fit one round of the SMs.
  int splits = 0;
};

// "whole", "split2" ... "split16", "tail", "tail2" ... "tail16" (the last round's tiles in that
// many parts, over more than one round of the SMs where need be: measured on an H100 at
// c1a71e9, tail5 gained nothing over tail's two parts, docs/benchmarks.md); throws
// longlive::Error naming the value otherwise.
Plan parse_plan(const std::string& text);
std::string to_string(const Plan& plan);
// LONGLIVE_FA3_SCHEDULE when set (parse_plan), else the default Plan{}. Read once.
const Plan& default_plan();

// Which query rows run whole and which split, and into how many parts: the rows [0, whole_rows)
// go to the persistent kernel, [whole_rows, whole_rows + split_rows) to the split one.
struct Partition {
  int64_t whole_rows = 0;
  int64_t split_rows = 0;
  int splits = 1;
};
// Pure arithmetic (CPU-testable): `tail` splits the last round's tiles into the most parts that
// still fit one round (at least 2, else everything runs whole; `tailN`: N parts), and only where
// the whole
// schedule would leave at least 10 % of its SM rounds idle (the steady block's 16 %, not the
// re-cache's 4.5 %: measured, see docs/benchmarks.md) and every part keeps at least 8 key tiles
// (1408 keys in bf16: cross-attention's 512 text tokens run whole); `split` splits every row. No
// part gets less than one key tile (`key_tile` keys: 176 in bf16, 224 in FP8).
Partition partition(const Plan& plan, int64_t q_tokens, int64_t kv_tokens, int64_t heads_x_batch,
                    int sm_count, int64_t key_tile = kBf16KeyTile);

// This build carries the FA3 kernel.
bool compiled();

// The kernel may run on `device`: compiled, a CUDA device of exactly sm_90, and no lower
// capability forced (LONGLIVE_FORCE_SM). Cached per device.
bool usable_on(const at::Device& device);

// attention() takes these tensors: bf16 on CUDA, q [B, H, Sq, 128], k/v [B, Hk, Sk, 128] (H a
// multiple of Hk) with a contiguous last dim, the other strides multiples of 8 elements and
// 16-byte aligned data (TMA's rules), same batch.
bool accepts(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// softmax(q k^T / sqrt(128)) v with no mask, on the current stream. Same shapes as
// ops::attention: returns [B, H, Sq, 128] (a view of a [B, Sq, H, 128] buffer, the layout the
// DiT's output projection reads). Throws longlive::Error if !accepts(q, k, v) or on a launch
// error. Every plan computes the same function (split partials are combined in fp32).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const Plan& plan);

// FP8 (the fp8 presets' self-attention over an FP8 KV cache): FA3's FP8 kernel on q, k, v in
// float8_e4m3fn at scale 1 (fp8_attention::quantize, the FP8 cache), same shapes and layout rules
// as attention() with strides in multiples of 16 elements. It multiplies in FP8 (P too) and
// accumulates in fp32 like cuDNN's FP8 kernel, but writes bf16 rather than E4M3: one rounding
// fewer. Returns bf16 [B, H, Sq, 128] (a view of [B, Sq, H, 128]). Throws longlive::Error if
// !accepts_fp8(q, k, v). The schedules are the bf16 ones (224-key tiles); the default is `tail`
// as for bf16, faster than `whole` at every shape we run on an H100 (2026-12-05: 0.62 vs 0.75 ms
// for a steady block; LONGLIVE_FA3_FP8_SCHEDULE picks another, read once).
bool accepts_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
const Plan& default_fp8_plan();
at::Tensor attention_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
at::Tensor attention_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const Plan& plan);

}  // namespace longlive::fa3
