#pragma once
// The control inputs the user has switched on in the studio (a VACE input, a video-to-video
// input), kept by the window so that a new engine (another resolution, model folder, the tiny
// model or another number of GPUs retires the old one, and with it its inputs) opens them again.
// Sliders and OSC/MIDI moves update the kept scale and strength. An input the engine showed as
// open and no longer shows was dropped there (its source failed for good, docs/vace.md): it is
// not followed any more. Qt-free, so its tests need no window.
#include <optional>

#include "longlive/timeline.h"
#include "longlive/vace.h"  // InputStatus

namespace longlive::ui {

class FollowedInputs {
 public:
  void vace_requested(const VaceRequest& request) { vace_.requested(request); }
  void vace_cleared() { vace_.request.reset(); }
  void vace_scale_moved(double scale);
  void v2v_requested(const V2vRequest& request) { v2v_.requested(request); }
  void v2v_cleared() { v2v_.request.reset(); }
  void v2v_strength_moved(double strength);

  // The current engine's input state (EngineStats::inputs).
  void sync(const InputStatus& status);
  // A new engine replaces the old one: what it should open (then sync() follows it there).
  struct Requests {
    std::optional<VaceRequest> vace;
    std::optional<V2vRequest> v2v;
  };
  Requests engine_replaced();

  const std::optional<VaceRequest>& vace() const { return vace_.request; }
  const std::optional<V2vRequest>& v2v() const { return v2v_.request; }

 private:
  // One input: what was asked, and whether the current engine has shown it open.
  template <class Request>
  struct Followed {
    std::optional<Request> request;
    bool seen = false;
    void requested(const Request& r) {
      request = r;
      seen = false;
    }
    // Open, then gone without the user clearing it: the engine dropped it.
    void sync(bool open) {
      if (!request) return;
      if (open) {
        seen = true;
      } else if (seen) {
        request.reset();
      }
    }
  };
  Followed<VaceRequest> vace_;
  Followed<V2vRequest> v2v_;
};

}  // namespace longlive::ui
