// AsyncDecoder: the frames of each submitted block, in order, equal a synchronous decode (CPU
// here; on the GPU box the same test runs the decode on its own CUDA stream).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <optional>
#include <string>
#include <vector>

#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/taehv.h"

namespace longlive {
namespace {

TEST(AsyncDecoder, FramesMatchASynchronousDecodeInOrder) {
  const WeightStore weights = make_random_taehv_weights(17);
  const at::Device cpu(at::kCPU);
  AsyncDecoder async(make_taehv_decoder(weights, {cpu, at::kFloat}), cpu);
  auto sync = make_taehv_decoder(weights, {cpu, at::kFloat});
  at::manual_seed(3);
  std::vector<at::Tensor> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(at::randn({1, 2, 16, 4, 4}));
  async.submit(blocks[0]);
  async.submit(blocks[1]);
  EXPECT_EQ(async.pending(), 2u);
  for (int i = 0; i < 2; ++i) {
    const at::Tensor frames = async.take();
    EXPECT_TRUE(frames.equal(to_rgba8(sync->decode(blocks[i])))) << "block " << i;
  }
  EXPECT_THROW(async.take(), Error);
  // reset(): the next block starts a new video (the first block yields fewer frames).
  async.reset();
  sync->reset();
  async.submit(blocks[2]);
  const at::Tensor first = async.take();
  EXPECT_EQ(first.size(0), sync->frames_for(2, /*first=*/true));
  EXPECT_TRUE(first.equal(to_rgba8(sync->decode(blocks[2]))));
  // On the CPU a taken block has host frames only.
  async.submit(blocks[0]);
  const DecodedBlock taken = async.take_block();
  EXPECT_TRUE(taken.host.defined());
  EXPECT_FALSE(taken.device.defined());
  EXPECT_EQ(taken.ready, nullptr);
}

// RGBA8 host frames against the same frames decoded another way (as int): at most `max_diff`
// apart, and only a few values apart at all.
void expect_same_frames(const at::Tensor& rgba, const at::Tensor& expected, int max_diff,
                        const std::string& what) {
  ASSERT_EQ(rgba.sizes(), expected.sizes()) << what;
  const at::Tensor diff = (rgba.to(at::kInt) - expected).abs();
  EXPECT_LE(diff.max().item<int>(), max_diff) << what;
  EXPECT_LT(diff.ne(0).to(at::kFloat).mean().item<float>(), 0.01) << what;
}

// A block decoded in parts of one latent frame: the parts come in order, each with its place in
// the block, and together they are the block decoded whole (the first block of a video too,
// whose first latent frame yields fewer frames). take_block() after a part hands out the rest.
void expect_parts_equal_whole_blocks(const at::Device& device, int max_diff) {
  const WeightStore weights = make_random_taehv_weights(17);
  AsyncDecoder async(make_taehv_decoder(weights, {device, at::kFloat}), device,
                     /*latent_frames_per_part=*/1);
  auto sync = make_taehv_decoder(weights, {device, at::kFloat});
  EXPECT_FALSE(async.take_part(/*wait=*/false).has_value());
  EXPECT_THROW(async.take_part(/*wait=*/true), Error);
  at::manual_seed(4);
  const int64_t latent_frames = 3;
  std::vector<at::Tensor> blocks;
  for (int i = 0; i < 2; ++i)
    blocks.push_back(at::randn({1, latent_frames, 16, 4, 6}, at::TensorOptions().device(device)));
  for (const auto& block : blocks) async.submit(block);
  EXPECT_EQ(async.pending(), 2u);
  // The first block, part by part.
  const at::Tensor whole0 = to_rgba8(sync->decode(blocks[0])).cpu().to(at::kInt);
  ASSERT_EQ(whole0.size(0), sync->frames_for(latent_frames, /*first=*/true));
  int64_t next = 0;
  for (int64_t p = 0; p < latent_frames; ++p) {
    const std::optional<DecodedPart> part = async.take_part(/*wait=*/true);
    ASSERT_TRUE(part.has_value()) << "part " << p;
    // The frames the video has after p + 1 latent frames, less those it had before.
    const int64_t frames =
        sync->frames_for(p + 1, /*first=*/true) - (p == 0 ? 0 : sync->frames_for(p, true));
    EXPECT_EQ(part->first_frame, next) << "part " << p;
    ASSERT_EQ(part->frames.host.size(0), frames) << "part " << p;
    EXPECT_EQ(part->last, p + 1 == latent_frames) << "part " << p;
    expect_same_frames(part->frames.host, whole0.narrow(0, next, frames), max_diff,
                       fmt::format("first block, part {}", p));
    if (device.is_cuda()) {
      ASSERT_TRUE(part->frames.device.defined());
      EXPECT_NE(part->frames.ready, nullptr);
      EXPECT_TRUE(part->frames.device.cpu().equal(part->frames.host)) << "part " << p;
    }
    next += part->frames.host.size(0);
  }
  EXPECT_EQ(next, whole0.size(0));
  EXPECT_EQ(async.pending(), 1u);
  // The second: one part, then the rest at once.
  const at::Tensor whole1 = to_rgba8(sync->decode(blocks[1])).cpu().to(at::kInt);
  ASSERT_EQ(whole1.size(0), sync->frames_for(latent_frames, /*first=*/false));
  const std::optional<DecodedPart> first = async.take_part(/*wait=*/true);
  ASSERT_TRUE(first.has_value());
  const int64_t first_frames = sync->frames_for(1, false);
  ASSERT_EQ(first->frames.host.size(0), first_frames);
  EXPECT_FALSE(first->last);
  expect_same_frames(first->frames.host, whole1.narrow(0, 0, first_frames), max_diff,
                     "second block, first part");
  const DecodedBlock rest = async.take_block();
  ASSERT_EQ(rest.host.size(0), whole1.size(0) - first_frames);
  expect_same_frames(rest.host, whole1.narrow(0, first_frames, rest.host.size(0)), max_diff,
                     "second block, the rest");
  if (device.is_cuda()) {
    EXPECT_TRUE(rest.device.cpu().equal(rest.host));
  }
  EXPECT_EQ(async.pending(), 0u);
  // The teeth: the parts of the second block are not the first block's.
  EXPECT_FALSE(whole0.narrow(0, 0, first_frames).equal(whole1.narrow(0, 0, first_frames)));
}

// The convolutions' sums run in another order for another batch of frames: a value on the edge
// of an 8-bit step may round the other way (1 of 255), nothing more.
TEST(AsyncDecoder, PartsOfALatentFrameEqualTheBlockDecodedWhole) {
  expect_parts_equal_whole_blocks(at::Device(at::kCPU), 1);
}

TEST(AsyncDecoder, GpuPartsOfALatentFrameEqualTheBlockDecodedWhole) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the decode stream is tested on the GPU box";
  expect_parts_equal_whole_blocks(at::Device(at::kCUDA, 0), 1);
}

TEST(AsyncDecoder, GpuDecodeStreamMatchesSynchronousDecode) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the decode stream is tested on the GPU box";
  const WeightStore weights = make_random_taehv_weights(17);
  const at::Device cuda(at::kCUDA, 0);
  AsyncDecoder async(make_taehv_decoder(weights, {cuda, at::kFloat}), cuda);
  auto sync = make_taehv_decoder(weights, {cuda, at::kFloat});
  at::manual_seed(3);
  for (int i = 0; i < 3; ++i) {
    // Latents made on the compute stream right before submit: the decode stream must wait.
    const at::Tensor latents = at::randn({1, 2, 16, 4, 4}, at::TensorOptions().device(cuda)) * 2;
    async.submit(latents);
    const DecodedBlock block = async.take_block();
    const at::Tensor& frames = block.host;
    const at::Tensor expected = to_rgba8(sync->decode(latents)).to(at::kCPU);
    ASSERT_EQ(frames.sizes(), expected.sizes());
    EXPECT_LE((frames.to(at::kInt) - expected.to(at::kInt)).abs().max().item<int>(), 1);
    // The device frames are the bytes the host copy was made from, and the decoder let go of
    // them: the caller's tensor is their only owner.
    ASSERT_TRUE(block.device.defined());
    EXPECT_TRUE(block.device.is_cuda());
    EXPECT_NE(block.ready, nullptr);
    EXPECT_TRUE(block.device.cpu().equal(frames));
    EXPECT_EQ(block.device.storage().use_count(), 1);
  }
}

}  // namespace
}  // namespace longlive
