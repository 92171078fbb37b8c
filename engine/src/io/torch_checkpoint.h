#pragma once
// Reader for PyTorch zip checkpoints (torch.save since 1.6): nested dicts of tensors.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "longlive/weights.h"

namespace longlive::io {

// Loads every tensor of a .pt/.pth file. Nested dict keys are joined with '.'; when `dict_key`
// is given, only that top-level entry is read (e.g. "generator", "generator_lora").
WeightStore load_torch_checkpoint(const std::filesystem::path& path, std::string_view dict_key);

// The same from the file's bytes; `origin` names the file in errors. Malformed input of any kind
// (zip, pickle, tensor records) is a FormatError, a missing `dict_key` a WeightError.
WeightStore read_torch_checkpoint(const std::vector<char>& bytes, const std::string& origin,
                                  std::string_view dict_key);

}  // namespace longlive::io
