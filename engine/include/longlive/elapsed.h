#pragma once
// Host time elapsed since a steady_clock point, in milliseconds: what the engine's stats, the
// recorder's progress and the view's traces report.
#include <chrono>

namespace longlive {

inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace longlive
