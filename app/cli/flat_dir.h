#pragma once
// Removes a flat folder the CLI made (files only, no subfolders): its files, then itself; errors
// are ignored (what cannot be removed stays). Not fs::remove_all: LibTorch's wheel exports its own
// copy of std::filesystem, and calls bind to it; its remove_all jumped to address 0 on a
// non-empty folder (SIGSEGV at the end of a soak, 2026-12-04). remove() and directory_iterator
// work.
#include <filesystem>
#include <system_error>
#include <vector>

namespace longlive::cli {

inline void remove_flat_dir(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (auto it = fs::directory_iterator(path, ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    files.push_back(it->path());
  for (const auto& f : files) fs::remove(f, ec);
  fs::remove(path, ec);
}

// A flat folder the CLI made, removed (remove_flat_dir) whatever ends its user, when `owned`.
struct OwnedDir {
  std::filesystem::path path;
  bool owned = false;
  ~OwnedDir() {
    if (owned) remove_flat_dir(path);
  }
};

}  // namespace longlive::cli
