#include "longlive/model_files.h"

#include <fmt/format.h>

#include "longlive/error.h"

namespace longlive {
namespace {

std::optional<std::filesystem::path> find_file(const std::filesystem::path& dir,
                                               const std::string& name) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file() && it->path().filename() == name) return it->path();
  }
  return std::nullopt;
}

bool is_pickle(const std::filesystem::path& p) {
  const auto ext = p.extension().string();
  return ext == ".pt" || ext == ".pth" || ext == ".bin";
}

}  // namespace

DitFiles find_dit_files(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path))
    throw IoError(fmt::format("DiT weights '{}' do not exist", path.string()));
  if (!std::filesystem::is_directory(path)) return {path, std::nullopt};
  DitFiles files;
  if (auto f = find_file(path, "longlive_base.pt")) {
    files.weights = *f;
  } else if (auto g = find_file(path, "diffusion_pytorch_model.safetensors")) {
    files.weights = *g;
  } else if (auto h = find_file(path, "diffusion_pytorch_model.safetensors.index.json")) {
    files.weights = *h;
  } else {
    throw IoError(
        fmt::format("no DiT weights in '{}': expected LongLive-1.3B/models/longlive_base.pt or "
                    "Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors",
                    path.string()));
  }
  files.lora = find_file(path, "lora.pt");
  return files;
}

std::optional<std::filesystem::path> find_wan_vae_file(const std::filesystem::path& folder) {
  for (const char* name : {"Wan2.1_VAE.pth", "Wan2.1_VAE.safetensors"})
    if (auto f = find_file(folder, name)) return f;
  return std::nullopt;
}

WeightStore load_dit_weights(const std::filesystem::path& file) {
  if (!is_pickle(file)) return WeightStore::open(file);
  WeightStore all = WeightStore::open(file, "generator");
  WeightStore stripped = all.strip_prefix("model.");
  return stripped.size() > 0 ? stripped : all;
}

WeightStore load_dit_lora(const std::filesystem::path& file) {
  return is_pickle(file) ? WeightStore::open(file, "generator_lora") : WeightStore::open(file);
}

}  // namespace longlive
