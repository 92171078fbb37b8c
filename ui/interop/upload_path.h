#pragma once
// Which way a frame reaches the video view's texture, chosen per frame: CUDA-GL interop for a
// frame that is on the GPU while interop works, else the host frame with glTexSubImage2D.
// The first interop failure switches to host uploads for good, logged once: a broken interop
// costs nothing but a log line, never a crash or a black view. Qt-free, so it is unit-tested.
#include <string>
#include <string_view>

#include "longlive/decoder.h"

namespace longlive::ui {

enum class UploadPath { host, cuda_gl };

// "host" / "CUDA-GL interop": what the view's status line and the overlay show.
std::string_view upload_path_label(UploadPath path);

class UploadPathSelector {
 public:
  explicit UploadPathSelector(bool interop_built);

  UploadPath choose(const DeviceFrame& frame) const;
  // Interop failed (why): host uploads from now on. Logs the first reason only.
  void give_up_interop(const std::string& why);
  // Whether the engine should hand out device frames (interop built and not given up).
  bool wants_device_frames() const { return interop_built_ && why_not_.empty(); }
  // Why interop is off ("" while it is on or was never needed).
  const std::string& why_not() const { return why_not_; }

 private:
  bool interop_built_;
  std::string why_not_;
};

}  // namespace longlive::ui
