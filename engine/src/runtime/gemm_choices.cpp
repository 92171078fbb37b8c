#include "runtime/gemm_choices.h"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "io/replace_file.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive::lt_gemm {
namespace {

// The file's entries, or an error saying what is wrong with it. A missing file has none.
std::map<std::string, int64_t> read_choices(const std::filesystem::path& file, std::string& error) {
  std::map<std::string, int64_t> out;
  std::ifstream in(file, std::ios::binary);
  if (!in) return out;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    error = "not valid JSON";
    return {};
  }
  if (!j.is_object()) {
    error = "not a JSON object";
    return {};
  }
  for (const auto& [key, value] : j.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0) {
      error = fmt::format("entry \"{}\" is {}, expected a non-negative integer", key, value.dump());
      return {};
    }
    out[key] = value.get<int64_t>();
  }
  return out;
}

}  // namespace

ChoiceStore::ChoiceStore(std::filesystem::path file) : file_(std::move(file)) {
  if (file_.empty()) return;
  std::string error;
  choices_ = read_choices(file_, error);
  if (!error.empty())
    log::warn("GEMM algorithm choices in {}: {}; not used (timed again and rewritten)",
              file_.string(), error);
}

std::optional<int64_t> ChoiceStore::find(const std::string& key) const {
  const std::lock_guard lock(mutex_);
  const auto it = choices_.find(key);
  if (it == choices_.end()) return std::nullopt;
  return it->second;
}

size_t ChoiceStore::size() const {
  const std::lock_guard lock(mutex_);
  return choices_.size();
}

bool ChoiceStore::record(const std::string& key, int64_t index) {
  const std::lock_guard lock(mutex_);
  choices_[key] = index;
  if (file_.empty()) return false;
  // What another process recorded since this one read the file stays; this one's choices win.
  std::string ignored;
  std::map<std::string, int64_t> merged = read_choices(file_, ignored);
  for (const auto& [k, v] : choices_) merged[k] = v;
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : merged) j[k] = v;

  std::string why;
  std::error_code ec;
  if (file_.has_parent_path()) std::filesystem::create_directories(file_.parent_path(), ec);
  if (ec) {
    why = fmt::format("cannot create its folder: {}", ec.message());
  } else {
    try {
      replace_file(file_, "GEMM algorithm choices",
                   [&](std::ostream& out) { out << j.dump(2) << '\n'; });
    } catch (const IoError& e) {
      why = e.what();
    }
  }
  if (why.empty()) return true;
  if (!warned_)
    log::warn("GEMM algorithm choices not saved to {}: {} (they hold for this run only)",
              file_.string(), why);
  warned_ = true;
  return false;
}

std::filesystem::path ChoiceStore::default_file() {
  if (const char* file = std::getenv("LONGLIVE_GEMM_TUNING_FILE")) return file;
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache)
    return std::filesystem::path(cache) / "longlive" / "gemm-algorithms.json";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / ".cache" / "longlive" / "gemm-algorithms.json";
  return {};
}

}  // namespace longlive::lt_gemm
