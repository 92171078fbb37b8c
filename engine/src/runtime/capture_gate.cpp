#include "runtime/capture_gate.h"

#include <algorithm>
#include <array>

namespace longlive {

std::shared_mutex& capture_gate(c10::DeviceIndex device) {
  // One per device; indices past the table share its last gate (only more waiting, never less).
  static std::array<std::shared_mutex, 16> gates;
  const size_t index = device < 0 ? 0 : static_cast<size_t>(device);
  return gates[std::min(index, gates.size() - 1)];
}

}  // namespace longlive
