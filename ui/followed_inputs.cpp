#include "followed_inputs.h"

namespace longlive::ui {

void FollowedInputs::vace_requested(const VaceRequest& request) {
  vace_ = request;
  vace_seen_ = false;
}
void FollowedInputs::vace_cleared() { vace_.reset(); }
void FollowedInputs::vace_scale_moved(double scale) {
  if (vace_) vace_->scale = scale;
}
void FollowedInputs::v2v_requested(const V2vRequest& request) {
  v2v_ = request;
  v2v_seen_ = false;
}
void FollowedInputs::v2v_cleared() { v2v_.reset(); }
void FollowedInputs::v2v_strength_moved(double strength) {
  if (v2v_) v2v_->strength = strength;
}

void FollowedInputs::sync(const InputStatus& status) {
  // Open, then gone without the user clearing it: the engine dropped it.
  if (vace_ && !status.vace.empty()) vace_seen_ = true;
  if (vace_ && vace_seen_ && status.vace.empty()) vace_.reset();
  if (v2v_ && !status.v2v.empty()) v2v_seen_ = true;
  if (v2v_ && v2v_seen_ && status.v2v.empty()) v2v_.reset();
}

FollowedInputs::Requests FollowedInputs::engine_replaced() {
  vace_seen_ = v2v_seen_ = false;
  return {vace_, v2v_};
}

}  // namespace longlive::ui
