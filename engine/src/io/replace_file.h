#pragma once
// A file written whole or not at all: `write` fills a sibling of `path` (its name, the process id
// and ".tmp", so processes writing one file at once do not share a sibling), which is then renamed
// over `path`. A crash or a reader never sees half a file. Timelines, prompt sets, safetensors
// files and the GEMM choices are written so.
#include <filesystem>
#include <functional>
#include <ostream>

namespace longlive {

// IoError naming `what`, `path` and the cause (the sibling is removed then).
void replace_file(const std::filesystem::path& path, const char* what,
                  const std::function<void(std::ostream&)>& write);

}  // namespace longlive
