#pragma once
// Named tensors from checkpoint files (safetensors, sharded safetensors, PyTorch .pt/.pth zip
// pickles), looked up by their original state_dict names with shape/dtype checks.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace longlive {

class WeightStore {
 public:
  WeightStore() = default;

  // Opens one checkpoint: *.safetensors, *.safetensors.index.json (shards), *.pt/*.pth/*.bin.
  // For a pickle holding nested dicts, `dict_key` selects one entry (e.g. "generator"); nested
  // dict names are otherwise joined with '.'.
  static WeightStore open(const std::filesystem::path& path, std::string_view dict_key = {});

  // Adds every tensor of another store; a name present twice is an error naming both files.
  void merge(const WeightStore& other);
  // Adds one tensor (tests, generated weights).
  void add(const std::string& name, const at::Tensor& tensor,
           const std::string& source = "<memory>");

  void add_metadata(const std::map<std::string, std::string>& metadata);

  // Returns a store whose names have `prefix` removed (names without it are dropped),
  // e.g. strip_prefix("model.") for LongLive's generator dict.
  WeightStore strip_prefix(std::string_view prefix) const;

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }
  std::vector<std::string> names() const;  // sorted

  // The tensor (zero-copy where the format allows); WeightError naming the files if missing.
  const at::Tensor& get(const std::string& name) const;
  // Like get(), and checks the shape (and dtype unless Undefined). The error names the file,
  // the tensor, the expected and the actual shape/dtype.
  const at::Tensor& require(const std::string& name, at::IntArrayRef shape,
                            at::ScalarType dtype = at::ScalarType::Undefined) const;
  const std::string& source_of(const std::string& name) const;

  // `__metadata__` of safetensors files (string -> string), merged over all files.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The files this store was read from, for messages.
  std::string describe_sources() const;

 private:
  struct Entry {
    at::Tensor tensor;
    std::string source;
  };
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> sources_;
};

// ---- Writing
// Writes tensors to a safetensors file (latents, embeddings, test data). CPU copies are made as
// needed; the write goes to a temporary file renamed into place, so readers never see half a file.
void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// ---- A model's files
// Finding and loading the DiT weights a user points at (a file or a model folder).
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

// ---- Describing checkpoints (`longlive inspect`)
// Tables describing checkpoint contents (`longlive inspect`).
namespace io {
// {"file", "tensors": [{"name","dtype","shape","bytes"}], "count", "parameters", "bytes"}
nlohmann::json describe_weights(const WeightStore& store, const std::string& file);
// Human-readable table of the same, with totals.
std::string format_weights_table(const nlohmann::json& description);
}  // namespace io

}  // namespace longlive
