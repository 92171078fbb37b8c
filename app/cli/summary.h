#pragma once
// Median / p99 / max of a set of timings, as the benchmarks report them.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <vector>

namespace longlive::cli {

struct Summary {
  double mean = 0, median = 0, p99 = 0, max = 0;
  int count = 0;
};

inline Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.count = static_cast<int>(v.size());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(0.99 * v.size())) - 1)];
  s.max = v.back();
  return s;
}

// As the results JSON holds it.
inline nlohmann::json to_json(const Summary& s) {
  return {{"mean_ms", s.mean},
          {"median_ms", s.median},
          {"p99_ms", s.p99},
          {"max_ms", s.max},
          {"count", s.count}};
}

}  // namespace longlive::cli
