// The inputs the studio opens again in a new engine (FollowedInputs): what the user switched on,
// with the last slider values, until the user clears it or the engine drops it.
#include "followed_inputs.h"

#include <gtest/gtest.h>

namespace longlive::ui {
namespace {

VaceRequest camera_vace() {
  VaceRequest r;
  r.source.path = "/dev/video0";
  r.mode = "conditioning";
  r.scale = 1.0;
  return r;
}

InputStatus showing(const std::string& vace, const std::string& v2v = {}) {
  InputStatus s;
  s.vace = vace;
  s.v2v = v2v;
  return s;
}

TEST(FollowedInputs, ANewEngineGetsTheInputsWithTheirLastValues) {
  FollowedInputs inputs;
  EXPECT_FALSE(inputs.engine_replaced().vace);
  inputs.vace_requested(camera_vace());
  V2vRequest v2v;
  v2v.source.path = "in.mp4";
  inputs.v2v_requested(v2v);
  inputs.sync(showing("conditioning: camera '/dev/video0'", "video 'in.mp4'"));
  inputs.vace_scale_moved(0.5);
  inputs.v2v_strength_moved(0.3);
  const FollowedInputs::Requests next = inputs.engine_replaced();
  ASSERT_TRUE(next.vace && next.v2v);
  EXPECT_EQ(next.vace->source.path, "/dev/video0");
  EXPECT_EQ(next.vace->scale, 0.5);
  EXPECT_EQ(next.v2v->strength, 0.3);
  // The new engine has not opened them yet: its first stats (nothing open) drop nothing.
  inputs.sync(showing(""));
  EXPECT_TRUE(inputs.vace() && inputs.v2v());
}

TEST(FollowedInputs, ClearedOrDroppedInputsAreNotFollowed) {
  FollowedInputs inputs;
  inputs.vace_requested(camera_vace());
  inputs.sync(showing(""));  // requested, not open yet
  EXPECT_TRUE(inputs.vace());
  inputs.sync(showing("conditioning: camera '/dev/video0'"));
  inputs.sync(showing(""));  // open, then gone: the engine dropped it (camera unplugged)
  EXPECT_FALSE(inputs.vace());
  EXPECT_FALSE(inputs.engine_replaced().vace);

  V2vRequest v2v;
  v2v.source.path = "in.mp4";
  inputs.v2v_requested(v2v);
  inputs.v2v_cleared();
  inputs.v2v_strength_moved(0.9);  // a slider with nothing open keeps nothing
  EXPECT_FALSE(inputs.engine_replaced().v2v);
}

}  // namespace
}  // namespace longlive::ui
