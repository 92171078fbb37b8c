#include "upload_path.h"

#include "longlive/log.h"

namespace longlive::ui {

std::string_view upload_path_label(UploadPath path) {
  return path == UploadPath::cuda_gl ? "CUDA-GL interop" : "host";
}

UploadPathSelector::UploadPathSelector(bool interop_built) : interop_built_(interop_built) {}

UploadPath UploadPathSelector::choose(const DeviceFrame& frame) const {
  return wants_device_frames() && frame.on_device() ? UploadPath::cuda_gl : UploadPath::host;
}

void UploadPathSelector::give_up_interop(const std::string& why) {
  if (!why_not_.empty()) return;
  why_not_ = why.empty() ? "unknown error" : why;
  log::warn("video view: {}; frames are uploaded from host memory from now on", why_not_);
}

}  // namespace longlive::ui
