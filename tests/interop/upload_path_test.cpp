// The video view's upload path choice (CPU): host frames always go the host way, device frames
// take CUDA-GL interop only while it is built and has not failed, and the first failure turns it
// off for good with one log line. Also: the uploader refuses, with a reason, what it cannot do.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "cuda_gl_uploader.h"
#include "log_capture.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "upload_path.h"

namespace longlive::ui {
namespace {

// A stand-in event handle: the selector only checks that there is one.
std::shared_ptr<CUevent_st> fake_event() {
  static int token = 0;
  return {reinterpret_cast<CUevent_st*>(&token), [](CUevent_st*) {}};
}

using test::LogCapture;

TEST(UploadPath, Labels) {
  EXPECT_EQ(upload_path_label(UploadPath::host), "host");
  EXPECT_EQ(upload_path_label(UploadPath::cuda_gl), "CUDA-GL interop");
}

TEST(UploadPath, FramesWithoutADeviceCopyTakeTheHostPath) {
  const UploadPathSelector selector(/*interop_built=*/true);
  EXPECT_TRUE(selector.wants_device_frames());
  EXPECT_EQ(selector.choose(DeviceFrame{}), UploadPath::host);  // what a CPU engine hands out
  // A tensor on the CPU is no device frame, even with an event.
  const DeviceFrame on_cpu{at::zeros({4, 6, 4}, at::kByte), fake_event()};
  EXPECT_FALSE(on_cpu.on_device());
  EXPECT_EQ(selector.choose(on_cpu), UploadPath::host);
}

TEST(UploadPath, WithoutCudaInTheBuildNoDeviceFramesAreAskedFor) {
  const UploadPathSelector selector(/*interop_built=*/false);
  EXPECT_FALSE(selector.wants_device_frames());
  EXPECT_EQ(selector.choose(DeviceFrame{}), UploadPath::host);
  EXPECT_TRUE(selector.why_not().empty());
  // What the studio uses follows the build.
  EXPECT_EQ(UploadPathSelector(CudaGlUploader::available_in_build()).wants_device_frames(),
            CudaGlUploader::available_in_build());
}

TEST(UploadPath, FirstInteropFailureSwitchesToHostForGoodAndLogsOnce) {
  const LogCapture log;
  UploadPathSelector selector(/*interop_built=*/true);
  selector.give_up_interop("CUDA-GL interop: the GL context does not run on a CUDA GPU");
  selector.give_up_interop("CUDA-GL interop: a second failure");
  EXPECT_FALSE(selector.wants_device_frames());
  EXPECT_EQ(selector.why_not(), "CUDA-GL interop: the GL context does not run on a CUDA GPU");
  EXPECT_EQ(selector.choose(DeviceFrame{}), UploadPath::host);
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("does not run on a CUDA GPU"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("host memory"), std::string::npos) << lines[0];
}

TEST(UploadPathGpu, DeviceFramesTakeInteropUntilItFails) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: a device frame needs one";
  const DeviceFrame frame{
      at::zeros({4, 6, 4}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA)), fake_event()};
  UploadPathSelector selector(/*interop_built=*/true);
  EXPECT_EQ(selector.choose(frame), UploadPath::cuda_gl);
  EXPECT_EQ(UploadPathSelector(false).choose(frame), UploadPath::host);
  selector.give_up_interop("test");
  EXPECT_EQ(selector.choose(frame), UploadPath::host);
}

// A loader for a context without GL functions: the uploader names the first one it lacks.
TEST(CudaGlUploader, NamesAMissingGlFunction) {
  const GlProcLoader none = [](const char*) -> GlProc { return nullptr; };
  if (!CudaGlUploader::available_in_build()) {
    CudaGlUploader uploader(none);
    EXPECT_THROW(uploader.upload(DeviceFrame{}, 1), Error);
    return;
  }
  try {
    CudaGlUploader uploader(none);
    FAIL() << "constructed without GL functions";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("glGenBuffers"), std::string::npos) << e.what();
  }
}

void no_gl_call() {
  ADD_FAILURE() << "a GL function was called for a frame that cannot be uploaded";
}

// A frame that is not on the GPU is refused before any GL or CUDA work, with the reason.
TEST(CudaGlUploader, RefusesAHostFrameWithAReason) {
  const GlProcLoader any = [](const char*) -> GlProc { return &no_gl_call; };
  CudaGlUploader uploader(any);
  const DeviceFrame on_cpu{at::zeros({4, 6, 4}, at::kByte), fake_event()};
  try {
    uploader.upload(on_cpu, 1);
    FAIL() << "a host frame was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  CudaGlUploader::available_in_build() ? "not on a CUDA device" : "no CUDA"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(uploader.registrations(), 0);
  EXPECT_EQ(uploader.pixel_buffer(), 0u);
}

}  // namespace
}  // namespace longlive::ui
