#pragma once
// The control inputs the user has switched on in the studio (a VACE input, a video-to-video
// input), kept by the window so that a new engine (another resolution, model, preset folder or
// number of GPUs retires the old one, and with it its inputs) opens them again. Sliders and
// OSC/MIDI moves update the kept scale and strength. An input the engine showed as open and no
// longer shows was dropped there (its source failed for good, docs/vace.md): it is not followed
// any more. Qt-free, so its tests need no window.
#include <optional>

#include "longlive/timeline.h"
#include "longlive/vace.h"  // InputStatus

namespace longlive::ui {

class FollowedInputs {
 public:
  void vace_requested(const VaceRequest& request);
  void vace_cleared();
  void vace_scale_moved(double scale);
  void v2v_requested(const V2vRequest& request);
  void v2v_cleared();
  void v2v_strength_moved(double strength);

  // The current engine's input state (EngineStats::inputs).
  void sync(const InputStatus& status);
  // A new engine replaces the old one: what it should open (then sync() follows it there).
  struct Requests {
    std::optional<VaceRequest> vace;
    std::optional<V2vRequest> v2v;
  };
  Requests engine_replaced();

  const std::optional<VaceRequest>& vace() const { return vace_; }
  const std::optional<V2vRequest>& v2v() const { return v2v_; }

 private:
  std::optional<VaceRequest> vace_;
  std::optional<V2vRequest> v2v_;
  bool vace_seen_ = false, v2v_seen_ = false;  // shown as open by the current engine
};

}  // namespace longlive::ui
