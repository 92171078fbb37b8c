#pragma once
// A model folder of random weights under the public downloads' file names, formats and layout,
// which SessionFactory opens as it opens the real one: for testing the folder's load path on
// the CPU, and for timing a model load from files (page cache) on a GPU without the downloads.
#include <cstdint>
#include <filesystem>

namespace longlive {

struct RandomModelFolder {
  std::filesystem::path dit;           // Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors
  std::filesystem::path text_encoder;  // Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth
  std::filesystem::path tokenizer;     // Wan2.1-T2V-1.3B/google/umt5-xxl/spiece.model
  std::filesystem::path taehv;         // taew2_1.pth
};

// Writes the folder under `dir` (created). `full`: the real sizes and dtypes (the 1.3B DiT in
// float32, 5.7 GB; umT5-XXL's encoder in bf16, 11.4 GB; needs ~3x that in memory while
// writing); else a small model with the real file set (a 2-layer DiT of width 256, 128 per head
// as a folder's loader assumes, and a 2-layer umT5 of width 64), in float32. The tokenizer is
// trained on a few sentences (a small vocabulary, not umT5's). IoError naming the file that
// could not be written.
RandomModelFolder write_random_model_folder(const std::filesystem::path& dir, bool full,
                                            uint64_t seed = 1);

}  // namespace longlive
