#pragma once
// Writes tensors to a safetensors file (latents, embeddings, test data). CPU copies are made as
// needed; the write goes to a temporary file renamed into place, so readers never see half a file.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>

namespace longlive {

void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace longlive
