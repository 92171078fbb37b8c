// VACE contexts and video-to-video latents encoded a block ahead (EncodeAhead: a thread and CUDA
// stream of their own, beside the DiT) make the video encoded in place, block for block; a
// source that fails does so at the same block either way. The ahead path runs on a GPU only
// (these tests skip without one); the deferred failure is checked on the CPU too.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/encode_ahead.h"
#include "engine_support.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/session.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"
#include "runtime/capture_gate.h"
#include "scoped_env.h"

namespace longlive::test {
namespace {

// Frames that depend only on their index in the stream (as a video file's), failing from frame
// `fail_at` on when it is set.
class IndexedFrames : public VaceFrameSource {
 public:
  IndexedFrames(int64_t height, int64_t width, int64_t fail_at = -1, bool paced = false,
                bool camera = false)
      : height_(height), width_(width), fail_at_(fail_at), paced_(paced), camera_(camera) {}
  // Paced: a live input whose next frames are never filmed yet when asked.
  bool has_frames(int64_t) const override { return !paced_; }
  // A camera's frames: paced, or there already (the GPU behind the camera, its replay).
  bool filmed() const override { return paced_ || camera_; }
  at::Tensor first_frames(int64_t count) override {
    ++first_reads;
    return next_frames(count);
  }
  int64_t position() const { return position_; }
  int64_t first_reads = 0;
  std::vector<int64_t> parts;  // the sizes of the parts handed out by next_frames_in_parts
  // Part by part, each made when it is handed out (as a camera films them).
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override {
    for (int64_t begin = 0; begin < count; begin += part) {
      const int64_t n = std::min(part, count - begin);
      parts.push_back(n);
      part_read(next_frames(n));
    }
  }
  at::Tensor next_frames(int64_t count) override {
    if (fail_at_ >= 0 && position_ + count > fail_at_) throw IoError("the camera was unplugged");
    std::vector<at::Tensor> frames;
    for (int64_t i = 0; i < count; ++i, ++position_) {
      auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(position_ + 1));
      frames.push_back(at::rand({3, height_, width_}, gen) * 2 - 1);
    }
    return at::stack(frames);
  }

 private:
  int64_t height_, width_, fail_at_;
  bool paced_, camera_;
  int64_t position_ = 0;
};

// Encoded ahead (on a GPU; the default there) or in place, while this lives.
struct Ahead : ScopedEnv {
  Ahead() : ScopedEnv("LONGLIVE_ENCODE_AHEAD", "1") {}
};
struct InPlace : ScopedEnv {
  InPlace() : ScopedEnv("LONGLIVE_ENCODE_AHEAD", "0") {}
};

struct InputRun {
  at::Tensor latents;          // the blocks that ran, on the CPU
  int64_t failed_block = -1;   // where the source's failure surfaced
  std::vector<int64_t> read;   // frames read from the source when each block's DiT was queued
  int64_t first_reads = 0;     // first_frames calls
  std::vector<int64_t> parts;  // the sizes of the parts read as filmed
};

// `blocks` blocks of the tiny model with a VACE (or, v2v, a video-to-video) input: a file's
// frames, a paced camera's, or (camera) a camera's that are there when read.
InputRun run(at::Device device, bool v2v, int64_t blocks, int64_t fail_at = -1, bool paced = false,
             bool camera = false) {
  SessionOverrides overrides;
  overrides.text_encoder = false;
  overrides.live_decoder = false;
  SessionFactory factory(tiny_model(device), overrides);
  auto session = factory.open(windowed_preset(), 32, 32);
  StreamGenerator& g = *session->generator;
  auto source = std::make_shared<IndexedFrames>(32, 32, fail_at, paced, camera);
  std::unique_ptr<VaceConditioner> vace;
  std::unique_ptr<VideoToVideo> video;
  if (v2v)
    video = std::make_unique<VideoToVideo>(factory.video_encoder(), 0.7, source);
  else
    vace = std::make_unique<VaceConditioner>(factory.vace_encoder(), VaceSettings{}, source);
  const auto& o = g.options();
  auto gen = at::detail::createCPUGenerator(3);
  g.start(at::randn({1, o.model.text_len, o.model.text_dim}, gen).to(device), 11);
  InputRun out;
  std::vector<at::Tensor> latents;
  for (int64_t b = 0; b < blocks; ++b) {
    try {
      if (vace) vace->before_block(g);
      if (video) video->before_block(g);
    } catch (const IoError&) {
      out.failed_block = b;
      break;
    }
    out.read.push_back(source->position());
    latents.push_back(g.next_block().to(at::kCPU));
  }
  out.latents = at::cat(latents, 1);
  out.first_reads = source->first_reads;
  out.parts = source->parts;
  return out;
}

TEST(EncodeAhead, AFailureFoundAheadSurfacesAtTake) {
  const Ahead on;
  EncodeAhead ahead(at::kCPU);
  EXPECT_FALSE(ahead.enabled()) << "the CPU encodes in place";
  EXPECT_FALSE(ahead.pending());
  EXPECT_THROW(ahead.take(), Error);
  ahead.fail(std::make_exception_ptr(IoError("source gone")));
  EXPECT_TRUE(ahead.pending());
  EXPECT_THROW(ahead.take(), IoError);
  EXPECT_FALSE(ahead.pending());
}

// On by default (measured faster on a GPU); LONGLIVE_ENCODE_AHEAD=0 encodes in place. On the
// CPU nothing runs ahead whatever the setting.
TEST(EncodeAhead, OnUnlessTheEnvironmentSaysZero) {
  unsetenv("LONGLIVE_ENCODE_AHEAD");
  EXPECT_TRUE(encode_ahead_turned_on());
  {
    const InPlace off;
    EXPECT_FALSE(encode_ahead_turned_on());
    EXPECT_FALSE(EncodeAhead(at::kCPU).enabled());
  }
  {
    const Ahead on;
    EXPECT_TRUE(encode_ahead_turned_on());
    EXPECT_FALSE(EncodeAhead(at::kCPU).enabled());
  }
}

// The helper's own check on the CPU (in place): the failing source stops block 3.
TEST(EncodeAhead, TheFailingSourceStopsTheFourthBlockInPlace) {
  for (const bool v2v : {false, true}) {
    const InputRun failed = run(at::kCPU, v2v, 5, 40);
    EXPECT_EQ(failed.failed_block, 3) << (v2v ? "video-to-video" : "VACE");
    EXPECT_EQ(failed.latents.size(1), 3 * windowed_preset().frames_per_block);
  }
}

// A paced camera's blocks (not filmed yet at their turn) are read in parts as they are filmed,
// each part encoded as it comes, so that only the last part's encode is left once the block's
// last frame is filmed: the video is the one made of the same frames read whole (the camera's
// replay, or a camera the GPU is behind), bit for bit. LONGLIVE_ENCODE_AS_FILMED=0 reads such a
// block whole.
class ReadAsFilmed : public ::testing::TestWithParam<bool> {};

TEST_P(ReadAsFilmed, APacedInputsBlocksAreEncodedInPartsWithTheWholeBlocksBits) {
  const bool v2v = GetParam();
  const int64_t blocks = 4;
  // The GPU's rule on the CPU: a block's groups of frames (one per latent frame) in one encoder
  // pass, unless the call says (a camera's blocks: one group per pass, read whole or in parts).
  const ScopedEnv at_once("LONGLIVE_ENCODE_GROUPS_PER_PASS",
                          std::to_string(windowed_preset().frames_per_block).c_str());
  const InputRun whole = run(at::kCPU, v2v, blocks, -1, false, true);
  const InputRun parts = run(at::kCPU, v2v, blocks, -1, true);
  EXPECT_TRUE(at::equal(parts.latents, whole.latents))
      << "max |diff| " << (parts.latents - whole.latents).abs().max().item<float>();
  // A file's frames take a block in one pass: other bits (what the camera's rule keeps apart).
  const InputRun file = run(at::kCPU, v2v, blocks);
  EXPECT_FALSE(at::equal(file.latents, whole.latents))
      << "a block in one pass gave the bits of a group per pass: this test cannot tell";
  EXPECT_EQ(file.read, whole.read);
  EXPECT_EQ(parts.read, whole.read);
  EXPECT_TRUE(whole.parts.empty()) << "frames that are there are read whole";
  // Past the first block (taken at once through first_frames): one part per latent frame, all
  // of the encoder's temporal scale, the blocks' frames in all.
  const auto latent_frames = static_cast<size_t>(windowed_preset().frames_per_block);
  ASSERT_EQ(parts.parts.size(), static_cast<size_t>(blocks - 1) * latent_frames);
  EXPECT_EQ(parts.parts, std::vector<int64_t>(parts.parts.size(), parts.parts.front()));
  EXPECT_EQ(parts.parts.front() * static_cast<int64_t>(parts.parts.size()),
            parts.read.back() - parts.read.front());
  const ScopedEnv off("LONGLIVE_ENCODE_AS_FILMED", "0");
  const InputRun paced_whole = run(at::kCPU, v2v, blocks, -1, true);
  EXPECT_TRUE(paced_whole.parts.empty());
  EXPECT_TRUE(at::equal(paced_whole.latents, whole.latents));
}

INSTANTIATE_TEST_SUITE_P(Inputs, ReadAsFilmed, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "VideoToVideo" : "Vace"; });

class EncodeAheadGpu : public ::testing::TestWithParam<bool> {};

TEST_P(EncodeAheadGpu, IsTheEncodeInPlace) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  const bool v2v = GetParam();
  const InputRun in_place = [&] {
    const InPlace off;
    return run(cuda, v2v, 5);
  }();
  const InputRun again = [&] {
    const InPlace off;
    return run(cuda, v2v, 5);
  }();
  // The first block's encode ordered after the engine's stream (LONGLIVE_FIRST_ENCODE_UNORDERED
  // =0), and (the default) read and encoded on the worker beside it.
  const InputRun ahead = [&] {
    const Ahead on;
    const ScopedEnv ordered("LONGLIVE_FIRST_ENCODE_UNORDERED", "0");
    return run(cuda, v2v, 5);
  }();
  const InputRun unordered = [&] {
    const Ahead on;
    const ScopedEnv first("LONGLIVE_FIRST_ENCODE_UNORDERED", "1");
    return run(cuda, v2v, 5);
  }();
  // The GPU's own repeatability bounds the difference (0 with deterministic kernels).
  const float noise = (in_place.latents - again.latents).abs().max().item<float>();
  EXPECT_LE((ahead.latents - in_place.latents).abs().max().item<float>(), std::max(noise, 1e-6f));
  EXPECT_LE((unordered.latents - in_place.latents).abs().max().item<float>(),
            std::max(noise, 1e-6f));
  EXPECT_EQ(unordered.first_reads, 1);
  // The source fails inside block 3's frames (9 + 12 + 12 + 12 > 40): block 3 runs without its
  // input in both, although the ahead path read those frames while block 2 ran.
  const InputRun failed_in_place = [&] {
    const InPlace off;
    return run(cuda, v2v, 5, 40);
  }();
  const InputRun failed_ahead = [&] {
    const Ahead on;
    return run(cuda, v2v, 5, 40);
  }();
  EXPECT_EQ(failed_in_place.failed_block, 3);
  EXPECT_EQ(failed_ahead.failed_block, 3);
  EXPECT_LE((failed_ahead.latents - failed_in_place.latents).abs().max().item<float>(),
            std::max(noise, 1e-6f));
}

// A live input paced by its camera (its next frames not filmed when asked): each block's frames
// are read at that block, not a block ahead (which would hold the block before until the camera
// filmed them: a block of camera time on every frame's way to the screen), its first ones through
// first_frames; the latents are the in-place encode's of the same camera's frames read whole (a
// group of frames per encoder pass either way: VaceFrameSource::filmed). A camera that has its
// frames (the GPU behind it) is read a block ahead.
TEST_P(EncodeAheadGpu, APacedInputIsReadAtItsBlock) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  const bool v2v = GetParam();
  const int64_t blocks = 4;
  const InputRun in_place = [&] {
    const InPlace off;
    return run(cuda, v2v, blocks, -1, false, true);
  }();
  const InputRun again = [&] {
    const InPlace off;
    return run(cuda, v2v, blocks, -1, false, true);
  }();
  const Ahead on;
  const InputRun paced = run(cuda, v2v, blocks, -1, true);
  const InputRun filmed = run(cuda, v2v, blocks, -1, false, true);
  const float noise = (in_place.latents - again.latents).abs().max().item<float>();
  EXPECT_LE((paced.latents - in_place.latents).abs().max().item<float>(), std::max(noise, 1e-6f));
  // In place, each block's DiT is queued once its own frames are read: the paced run reads the
  // same, the filmed one a block more, from its second block on (the input's first block runs
  // its DiT alone unless LONGLIVE_FIRST_BLOCK_ALONE=0, the next block's frames read at their
  // block).
  ASSERT_EQ(in_place.read.size(), static_cast<size_t>(blocks));
  EXPECT_EQ(paced.read, in_place.read);
  ASSERT_EQ(filmed.read.size(), static_cast<size_t>(blocks));
  const char* alone = std::getenv("LONGLIVE_FIRST_BLOCK_ALONE");
  const int64_t ahead_from = alone != nullptr && std::string_view(alone) == "0" ? 0 : 1;
  if (ahead_from == 1) {
    EXPECT_EQ(filmed.read[0], in_place.read[0]);
  }
  for (int64_t b = ahead_from; b + 1 < blocks; ++b)
    EXPECT_EQ(filmed.read[size_t(b)], in_place.read[size_t(b + 1)]) << "block " << b;
  EXPECT_EQ(paced.first_reads, 1);
  EXPECT_EQ(in_place.first_reads, 1);
  // Read at their block, the paced blocks come in parts, encoded on the worker as they come.
  EXPECT_EQ(paced.parts.size(),
            static_cast<size_t>((blocks - 1) * windowed_preset().frames_per_block));
  EXPECT_TRUE(in_place.parts.empty());
}

// Whether a capture (exclusive) or other work (shared) could take the device's gate now, asked
// from another thread: a thread that holds a std::shared_mutex may not try it again.
bool could_start(c10::DeviceIndex device, bool capture) {
  return std::async(std::launch::async,
                    [device, capture] {
                      std::shared_mutex& gate = capture_gate(device);
                      const bool got = capture ? gate.try_lock() : gate.try_lock_shared();
                      if (got && capture) gate.unlock();
                      if (got && !capture) gate.unlock_shared();
                      return got;
                    })
      .get();
}
bool capture_could_start(c10::DeviceIndex device) { return could_start(device, true); }
bool work_could_start(c10::DeviceIndex device) { return could_start(device, false); }

// A capture excludes other threads' device work on its own device only (the device-wide
// synchronisation it guards against is per device); such work excludes captures, not itself.
TEST(CaptureGate, PerDeviceCapturesExcludeWorkAndWorkAllowsWork) {
  {
    const auto capture = hold_for_capture(0);
    EXPECT_FALSE(work_could_start(0));
    EXPECT_TRUE(work_could_start(1));  // another device goes on
  }
  {
    const auto work = hold_outside_captures(0);
    EXPECT_FALSE(capture_could_start(0));  // no capture while the work runs
    EXPECT_TRUE(work_could_start(0));      // other work does run
    EXPECT_TRUE(capture_could_start(1));
  }
  EXPECT_EQ(&capture_gate(-1), &capture_gate(0));  // "cuda" without an index is device 0
}

// The work runs on one thread for the object's lifetime (LibTorch keeps cuDNN's found plans per
// thread: a thread per block searched again every block) and outside DiT captures: it holds the
// capture gate, so a capture cannot begin while it runs (the encoders may synchronise the
// device, which breaks a capture on any thread).
TEST(EncodeAheadWorker, OneThreadAndNoCaptureWhileItWorks) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Ahead on;
  EncodeAhead ahead(at::Device(at::kCUDA, 0));
  ASSERT_TRUE(ahead.enabled());
  std::vector<std::thread::id> threads;
  std::vector<bool> capture_could_begin;
  for (int block = 0; block < 4; ++block) {
    ahead.launch([&] {
      threads.push_back(std::this_thread::get_id());
      capture_could_begin.push_back(capture_could_start(0));
      return at::ones({4}, at::TensorOptions().device(at::kCUDA)) * block;
    });
    EXPECT_EQ(ahead.take().sum().item<float>(), 4.0f * block);
  }
  ASSERT_EQ(threads.size(), 4u);
  EXPECT_NE(threads[0], std::this_thread::get_id());
  for (const std::thread::id& id : threads) EXPECT_EQ(id, threads[0]);
  for (const bool could : capture_could_begin) EXPECT_FALSE(could);
  // A capture holding the gate keeps the work from starting until it ends.
  std::atomic<bool> worked{false};
  {
    const auto capture = hold_for_capture(0);
    ahead.launch([&] {
      worked = true;
      return at::Tensor();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(worked.load());
  }
  ahead.take();
  EXPECT_TRUE(worked.load());
}

// A worker kept beyond its EncodeAhead (LiveInputs keeps one for the session):
// the next EncodeAhead's work runs on the same thread, so what cuDNN found there is found once
// per session, not once per input picked. A worker of another device is refused by name.
TEST(EncodeAheadWorker, AKeptWorkerServesTheNextInputOnTheSameThread) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Ahead on;
  const at::Device cuda(at::kCUDA, 0);
  const std::shared_ptr<EncodeWorker> worker = make_encode_worker(cuda);
  ASSERT_NE(worker, nullptr);
  std::vector<std::thread::id> threads;
  for (int input = 0; input < 2; ++input) {
    EncodeAhead ahead(cuda, worker);
    ASSERT_TRUE(ahead.enabled());
    ahead.launch([&] {
      threads.push_back(std::this_thread::get_id());
      return at::ones({4}, at::TensorOptions().device(cuda)) * (input + 1);
    });
    EXPECT_EQ(ahead.take().sum().item<float>(), 4.0f * (input + 1));
  }
  ASSERT_EQ(threads.size(), 2u);
  EXPECT_EQ(threads[0], threads[1]);
  EXPECT_NE(threads[0], std::this_thread::get_id());
  try {
    EncodeAhead elsewhere(at::Device(at::kCUDA, 1), worker);
    ADD_FAILURE() << "a worker of cuda:0 was taken for cuda:1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
}

// The factory builds the encoder on the GPU once and the inputs picked after the first share it
// (SessionFactory::shared_encoder, WanVaeEncoder::share): each encodes, bit for bit, what an
// encoder built from the host weights encodes, the norms' float64 gains included.
TEST(EncodeAheadEncoderWeights, KeptOnTheDeviceTheyEncodeAsFromTheHost) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  SessionFactory factory(tiny_model(cuda));
  WanVaeEncoderOptions options;
  options.device = cuda;
  options.dtype = at::kBFloat16;
  // The tiny model's random VAE (SessionFactory::encoder_weights), built here from the host.
  VaceContextEncoder from_host(make_random_wan_vae_weights(WanVaeConfig::tiny(), 0, true), options);
  auto from_kept = factory.vace_encoder();
  auto again = factory.vace_encoder();  // the second input picked: the kept encoder shared
  auto gen = at::detail::createCPUGenerator(5);
  const at::Tensor frames = at::rand({9, 3, 32, 32}, gen) * 2 - 1;
  const at::Tensor expected = from_host.encode(frames, at::Tensor()).to(at::kCPU);
  EXPECT_TRUE(at::equal(from_kept->encode(frames, at::Tensor()).to(at::kCPU), expected));
  EXPECT_TRUE(at::equal(again->encode(frames, at::Tensor()).to(at::kCPU), expected));
}

// The conditioning mode's black inactive blocks recorded by one input and taken by the next, on
// the kept worker's stream (LiveInputs): the contexts are an encoder's without the record, bit
// for bit, whether a block was taken, recorded or encoded by the first input.
TEST(EncodeAheadBlackInactive, ALaterInputTakesTheRecordOnTheKeptWorker) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Ahead on;
  const at::Device cuda(at::kCUDA, 0);
  SessionFactory factory(tiny_model(cuda));
  const std::shared_ptr<EncodeWorker> worker = make_encode_worker(cuda);
  ASSERT_NE(worker, nullptr);
  auto contexts = [&](VaceContextEncoder& encoder, int64_t blocks) {
    IndexedFrames source(32, 32);
    EncodeAhead ahead(cuda, worker);
    std::vector<at::Tensor> out;
    for (int64_t b = 0; b < blocks; ++b) {
      ahead.launch([&encoder, frames = source.next_frames(b == 0 ? 9 : 12)] {
        return encoder.encode(frames, at::Tensor());
      });
      out.push_back(ahead.take().to(at::kCPU));
    }
    return out;
  };
  const auto plain = factory.vace_encoder();
  const std::vector<at::Tensor> expected = contexts(*plain, 6);
  const auto record = factory.black_inactive_latents();
  const auto first = factory.vace_encoder();
  first->share_black_inactive(record);
  const std::vector<at::Tensor> brief = contexts(*first, 3);
  const auto later = factory.vace_encoder();
  later->share_black_inactive(record);
  const std::vector<at::Tensor> taken = contexts(*later, 6);
  for (size_t b = 0; b < expected.size(); ++b) {
    if (b < brief.size()) {
      EXPECT_TRUE(at::equal(brief[b], expected[b])) << "first input, block " << b;
    }
    EXPECT_TRUE(at::equal(taken[b], expected[b]))
        << "later input, block " << b << ": max |diff| "
        << (taken[b] - expected[b]).abs().max().item<float>();
  }
  EXPECT_EQ(later->inactive_blocks_from_record(), 3);
  // Every block recorded, unless the stream's fixed point came first (its block then repeats).
  if (!record->at_fixed_point(32, 32)) {
    EXPECT_EQ(record->blocks(32, 32), 6);
  }
}

// On the CPU (or with LONGLIVE_ENCODE_AHEAD=0) there is no worker: inputs encode in place.
TEST(EncodeAhead, NoWorkerWhereNothingRunsAhead) {
  EXPECT_EQ(make_encode_worker(at::Device(at::kCPU)), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Inputs, EncodeAheadGpu, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "VideoToVideo" : "Vace"; });

}  // namespace
}  // namespace longlive::test
