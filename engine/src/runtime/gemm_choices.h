#pragma once
// The cuBLASLt algorithm runtime/lt_gemm chose for each GEMM shape, kept in a file: a later run
// on the same machine takes the same algorithms without timing them again, and so the same bits
// (two algorithms may sum in different orders, and timing noise could pick either of two that
// are about as fast).
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace longlive::lt_gemm {

class ChoiceStore {
 public:
  // Reads `file` where it exists. A file that is not a JSON object of names to non-negative
  // integers is reported (a warning naming the file and what is wrong) and not used; the next
  // record() replaces it. An empty path keeps the choices for this process only.
  explicit ChoiceStore(std::filesystem::path file);

  std::optional<int64_t> find(const std::string& key) const;

  // Remembers key -> index and writes the file: its folder created, the entries another process
  // wrote meanwhile kept, written beside it and renamed over it (a reader sees the old or the new
  // file, never half of one). false where it cannot be written (one warning, naming the file and
  // why); the choice is still remembered for this process.
  bool record(const std::string& key, int64_t index);

  const std::filesystem::path& file() const { return file_; }
  size_t size() const;

  // LONGLIVE_GEMM_TUNING_FILE; else $XDG_CACHE_HOME/longlive/gemm-algorithms.json; else
  // $HOME/.cache/longlive/gemm-algorithms.json; else empty (no file).
  static std::filesystem::path default_file();

 private:
  std::filesystem::path file_;
  std::map<std::string, int64_t> choices_;
  bool warned_ = false;
  mutable std::mutex mutex_;
};

}  // namespace longlive::lt_gemm
