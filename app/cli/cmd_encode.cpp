// longlive encode : prompt text to DiT prompt embeddings (a safetensors file).
#include <ATen/ATen.h>

#include <iostream>

#include "command.h"
#include "longlive/text_encoder.h"
#include "longlive/weights.h"

namespace longlive::cli {
namespace {

const Registrar kEncode("encode", [](CLI::App& root) {
  auto* cmd =
      root.add_subcommand("encode", "Encode a prompt with umT5 into [1, 512, 4096] embeddings");
  struct Args {
    std::string text_encoder, tokenizer, prompt, out, device = "cpu";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--text-encoder", a->text_encoder, "models_t5_umt5-xxl-enc-bf16.pth")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "google/umt5-xxl/spiece.model")->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text")->required();
  cmd->add_option("--out", a->out, "Output safetensors (tensor 'prompt_embeds')")->required();
  cmd->add_option("--device", a->device, "cpu or cuda");
  return [a]() {
    const at::Device device = a->device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    const auto text = TextEncoder::open(a->text_encoder, a->tokenizer,
                                        {device, device.is_cpu() ? at::kFloat : at::kBFloat16});
    save_safetensors(a->out, {{"prompt_embeds", text->encode(a->prompt)}}, {{"prompt", a->prompt}});
    std::cout << "wrote " << a->out << "\n";
    return 0;
  };
});

}  // namespace
}  // namespace longlive::cli
