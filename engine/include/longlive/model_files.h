#pragma once
// Finding and loading the DiT weights a user points at (a file or a model folder).
#include <filesystem>
#include <optional>

#include "longlive/weights.h"

namespace longlive {

struct DitFiles {
  std::filesystem::path weights;              // Wan2.1 safetensors (or index) or LongLive .pt
  std::optional<std::filesystem::path> lora;  // LongLive lora.pt
};

// A file is used as is. In a folder (searched recursively), LongLive's longlive_base.pt wins over
// Wan2.1's diffusion_pytorch_model.safetensors(.index.json) (not the one of a *VACE* folder);
// lora.pt is picked up when present.
// IoError naming what was looked for when nothing fits.
DitFiles find_dit_files(const std::filesystem::path& path);

// The Wan 2.1 VAE of a model folder (searched recursively): Wan2.1_VAE.pth, else
// Wan2.1_VAE.safetensors; nullopt when neither is there (it is optional).
std::optional<std::filesystem::path> find_wan_vae_file(const std::filesystem::path& folder);

// The VACE weights of a model folder (searched recursively): a safetensors whose name contains
// "VACE_module" (Wan2_1-VACE_module_1_3B_bf16.safetensors), else the
// diffusion_pytorch_model.safetensors(.index.json) of a folder whose name contains "VACE"
// (Wan2.1-VACE-1.3B). nullopt when neither is there (VACE is optional).
std::optional<std::filesystem::path> find_vace_file(const std::filesystem::path& folder);
// Loads the `vace_*` tensors of a VACE module or a full VACE model (the base DiT tensors of the
// latter are left out; they are not read from disk). WeightError when there are none.
WeightStore load_vace_weights(const std::filesystem::path& file);

// Loads DiT weights by Wan2.1 names: LongLive .pt files are read from their "generator" dict with
// the "model." prefix stripped.
WeightStore load_dit_weights(const std::filesystem::path& file);
// Loads LongLive's LoRA ("generator_lora" of a .pt, or a safetensors of PEFT names).
WeightStore load_dit_lora(const std::filesystem::path& file);

}  // namespace longlive
