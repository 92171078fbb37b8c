#include "longlive/weights.h"

#include <fmt/format.h>

#include "longlive/error.h"

namespace longlive {
namespace {

template <typename Match>
std::optional<std::filesystem::path> find_if(const std::filesystem::path& dir, const Match& match) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file() && match(it->path())) return it->path();
  }
  return std::nullopt;
}

bool in_vace_folder(const std::filesystem::path& p) {
  return p.parent_path().filename().string().find("VACE") != std::string::npos;
}

// `name` anywhere under dir, outside VACE model folders (their diffusers file has the same name
// as the base model's).
std::optional<std::filesystem::path> find_file(const std::filesystem::path& dir,
                                               const std::string& name) {
  return find_if(dir, [&](const std::filesystem::path& p) {
    return p.filename() == name && !in_vace_folder(p);
  });
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

std::optional<std::filesystem::path> find_vace_file(const std::filesystem::path& folder) {
  if (auto module = find_if(folder, [](const std::filesystem::path& p) {
        const std::string name = p.filename().string();
        return name.find("VACE_module") != std::string::npos && p.extension() == ".safetensors";
      }))
    return module;
  for (const char* name :
       {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"}) {
    if (auto full = find_if(folder, [&](const std::filesystem::path& p) {
          return p.filename() == name && in_vace_folder(p);
        }))
      return full;
  }
  return std::nullopt;
}

WeightStore load_vace_weights(const std::filesystem::path& file) {
  const WeightStore all = WeightStore::open(file);
  WeightStore vace;
  for (const auto& name : all.names())
    if (name.find("vace_") != std::string::npos) vace.add(name, all.get(name), all.source_of(name));
  vace.add_metadata(all.metadata());
  if (vace.size() == 0)
    throw WeightError(
        fmt::format("{}: no VACE tensors (vace_patch_embedding.*, vace_blocks.*)", file.string()));
  return vace;
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
