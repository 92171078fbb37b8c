#pragma once
// Tables describing checkpoint contents (`longlive inspect`).
#include <nlohmann/json.hpp>
#include <string>

#include "longlive/weights.h"

namespace longlive::io {

// {"file", "tensors": [{"name","dtype","shape","bytes"}], "count", "parameters", "bytes"}
nlohmann::json describe_weights(const WeightStore& store, const std::string& file);
// Human-readable table of the same, with totals.
std::string format_weights_table(const nlohmann::json& description);

}  // namespace longlive::io
