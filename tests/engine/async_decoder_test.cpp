// AsyncDecoder: the frames of each submitted block, in order, equal a synchronous decode (CPU
// here; on the GPU box the same test runs the decode on its own CUDA stream).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

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
