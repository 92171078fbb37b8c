#include "longlive/random_model_folder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <sentencepiece_trainer.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <map>
#include <string>

#include "longlive/error.h"
#include "longlive/taehv.h"
#include "longlive/text_encoder.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {
namespace {

std::map<std::string, at::Tensor> tensors_of(const WeightStore& weights) {
  std::map<std::string, at::Tensor> out;
  for (const auto& name : weights.names()) out[name] = weights.get(name).contiguous();
  return out;
}

void write_bytes(const std::filesystem::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw IoError(fmt::format("cannot write '{}' ({} bytes)", path.string(), bytes.size()));
}

// A PyTorch zip checkpoint of a flat dict of tensors (LibTorch's writer: the zip layout and
// 64-byte aligned records of torch.save; the pickle is a plain dict, not a state_dict's
// OrderedDict, which tests/data's torch.save files cover).
void save_torch_zip(const std::filesystem::path& path, const WeightStore& weights) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : tensors_of(weights)) dict.insert(name, tensor);
  write_bytes(path, torch::jit::pickle_save(c10::IValue(dict)));
}

void train_tokenizer(const std::filesystem::path& model) {
  const std::filesystem::path corpus = model.parent_path() / "corpus.txt";
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 40; ++i)
      out << "a red fox runs through the snowy forest at dawn\n"
          << "neon city streets in the rain, cinematic lighting\n"
          << "waves roll onto a quiet beach under a violet sky\n"
          << "un chat noir dort sur le canapé\n";
    if (!out) throw IoError(fmt::format("cannot write '{}'", corpus.string()));
  }
  const std::string prefix = (model.parent_path() / model.stem()).string();
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus.string() + " --model_prefix=" + prefix +
      " --vocab_size=60 --hard_vocab_limit=false --character_coverage=1.0 --pad_id=0"
      " --eos_id=1 --unk_id=2 --bos_id=-1 --minloglevel=2");
  std::filesystem::remove(corpus);
  std::filesystem::remove(prefix + ".vocab");
  if (!status.ok())
    throw IoError(
        fmt::format("cannot train the tokenizer '{}': {}", model.string(), status.ToString()));
}

}  // namespace

RandomModelFolder write_random_model_folder(const std::filesystem::path& dir, bool full,
                                            uint64_t seed) {
  const std::filesystem::path wan = dir / "Wan2.1-T2V-1.3B";
  std::error_code error;
  std::filesystem::create_directories(wan / "google" / "umt5-xxl", error);
  if (error)
    throw IoError(fmt::format("cannot create '{}': {}", (wan / "google" / "umt5-xxl").string(),
                              error.message()));
  RandomModelFolder files{.dit = wan / "diffusion_pytorch_model.safetensors",
                          .text_encoder = wan / "models_t5_umt5-xxl-enc-bf16.pth",
                          .tokenizer = wan / "google" / "umt5-xxl" / "spiece.model",
                          .taehv = dir / "taew2_1.pth"};

  UMT5Config text = full ? UMT5Config::umt5_xxl() : UMT5Config::tiny(64);
  WanConfig dit = WanConfig::wan_1_3b();
  if (!full) {
    // A folder's loader takes 128 per head (the 1.3B's) and the umT5 width as the text width.
    dit.dim = 256;
    dit.ffn_dim = 512;
    dit.num_heads = 2;
    dit.num_layers = 2;
    dit.text_dim = text.dim;
  }
  // One at a time: the full sizes are large.
  save_safetensors(files.dit, tensors_of(make_random_wan_weights(dit, seed)));
  save_torch_zip(files.text_encoder,
                 make_random_umt5_weights(text, seed + 1, full ? at::kBFloat16 : at::kFloat));
  // Both halves, as taew2_1.pth holds them: the live decoder's and the inputs' encoder.
  WeightStore taehv = make_random_taehv_weights(seed + 2);
  taehv.merge(make_random_taehv_encoder_weights(seed + 3));
  save_torch_zip(files.taehv, taehv);
  train_tokenizer(files.tokenizer);
  return files;
}

}  // namespace longlive
