#include "followed_inputs.h"

namespace longlive::ui {

void FollowedInputs::vace_scale_moved(double scale) {
  if (vace_.request) vace_.request->scale = scale;
}

void FollowedInputs::v2v_strength_moved(double strength) {
  if (v2v_.request) v2v_.request->strength = strength;
}

void FollowedInputs::sync(const InputStatus& status) {
  vace_.sync(!status.vace.empty());
  v2v_.sync(!status.v2v.empty());
}

FollowedInputs::Requests FollowedInputs::engine_replaced() {
  vace_.seen = v2v_.seen = false;
  return {vace_.request, v2v_.request};
}

}  // namespace longlive::ui
