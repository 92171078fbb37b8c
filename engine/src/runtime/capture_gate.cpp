#include "runtime/capture_gate.h"

namespace longlive {

std::shared_mutex& capture_gate() {
  static std::shared_mutex gate;
  return gate;
}

}  // namespace longlive
