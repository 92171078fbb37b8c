#pragma once
// Reader for PyTorch zip checkpoints (torch.save since 1.6): nested dicts of tensors.
#include <filesystem>
#include <string_view>

#include "longlive/weights.h"

namespace longlive::io {

// Loads every tensor of a .pt/.pth file. Nested dict keys are joined with '.'; when `dict_key`
// is given, only that top-level entry is read (e.g. "generator", "generator_lora").
WeightStore load_torch_checkpoint(const std::filesystem::path& path, std::string_view dict_key);

}  // namespace longlive::io
