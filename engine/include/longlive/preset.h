#pragma once
// Presets: named, validated bundles of sampling and runtime settings (presets/*.json).
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace longlive {

enum class ComputeDType { bf16, fp16, fp32, fp8 };
enum class KvDType { bf16, fp16, fp32, int8 };
enum class DecoderKind { taehv, wan };
enum class PlacementDevice { gpu, cpu };
enum class InputEncoderKind { wan, taehv };

struct Preset {
  std::string name;
  std::string description;  // one line, says the quality trade-off
  std::vector<double> denoising_steps = {1000, 750, 500, 250};
  bool warp_denoising_step = true;
  double timestep_shift = 5.0;
  int local_attn_frames = 12;
  int sink_frames = 3;
  int frames_per_block = 3;
  bool global_sink = true;
  ComputeDType dtype = ComputeDType::bf16;
  KvDType kv_dtype = KvDType::bf16;
  bool cuda_graphs = false;
  bool fused_kernels = false;
  bool memory_pool = false;
  DecoderKind decoder = DecoderKind::taehv;
  int height = 480;
  int width = 832;
  PlacementDevice text_encoder_device = PlacementDevice::gpu;
  bool quality_preserving = true;
  // VACE: the hints of a block's first denoising step are reused by its later steps (the VACE
  // blocks run once per block instead of once per step; a small drift, see docs/vace.md).
  bool vace_hint_reuse = false;
  // The autoencoder that turns an input's frames (VACE control frames and reference images,
  // video-to-video frames) into latents. wan: the Wan VAE's encoder (the reference's; the
  // default). taehv: TAEHV's (taew2_1), ~1/30 of the arithmetic: a camera's frames reach the screen
  // sooner and the GPU keeps more for the DiT; its latents approximate the Wan VAE's
  // (docs/vace.md). An input takes the preset's encoder when it is picked.
  InputEncoderKind input_encoder = InputEncoderKind::wan;
};

// Parses one preset; `origin` (a file name) prefixes every error. Unknown keys, wrong types and
// out-of-range values throw ConfigError naming the field and what is allowed.
Preset parse_preset(std::string_view json_text, const std::string& origin);
Preset load_preset(const std::filesystem::path& path);
// Every *.json in `dir`, ordered quality, balanced, speed, turbo, turbo_fp8, ultra, then the
// others by name (low_memory last).
std::vector<Preset> load_presets(const std::filesystem::path& dir);
// Finds a preset by name in `dir`; ConfigError listing the available names if absent.
Preset find_preset(const std::filesystem::path& dir, const std::string& name);
nlohmann::json to_json(const Preset& preset);

std::string to_string(ComputeDType v);
std::string to_string(KvDType v);
std::string to_string(DecoderKind v);
std::string to_string(PlacementDevice v);
std::string to_string(InputEncoderKind v);

}  // namespace longlive
