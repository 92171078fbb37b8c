// longlive random-model DIR : a model folder of random weights under the public downloads' names
// and formats (the folder load path without the downloads; --full for timing a real-size load).
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "command.h"
#include "longlive/random_model_folder.h"

namespace longlive::cli {
namespace {

const Registrar kRandomModel("random-model", [](CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "random-model",
      "Write a model folder of random weights under the public files' names and formats");
  auto dir = std::make_shared<std::string>();
  auto full = std::make_shared<bool>(false);
  auto seed = std::make_shared<uint64_t>(1);
  cmd->add_option("dir", *dir, "Folder to write (created)")->required();
  cmd->add_flag("--full", *full,
                "The real sizes: the 1.3B DiT in float32 (5.7 GB), umT5-XXL in bf16 (11.4 GB)");
  cmd->add_option("--seed", *seed, "Random seed");
  return [dir, full, seed]() {
    const auto begin = std::chrono::steady_clock::now();
    const RandomModelFolder files = write_random_model_folder(*dir, *full, *seed);
    for (const auto& file : {files.dit, files.text_encoder, files.tokenizer, files.taehv})
      std::cout << fmt::format("{:>10.1f} MiB  {}\n",
                               static_cast<double>(std::filesystem::file_size(file)) / (1 << 20),
                               file.string());
    std::cout << fmt::format(
        "written in {:.1f} s\n",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
    return 0;
  };
});

}  // namespace
}  // namespace longlive::cli
