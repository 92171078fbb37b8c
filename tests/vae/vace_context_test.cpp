// VACE context encoding: the mask encoding and context layout pinned by vace_masks.safetensors
// (exact), and the inactive/reactive split through the Wan VAE encoder against the reference
// encoder outputs of wanvae_io.safetensors (an all-ones mask leaves nothing inactive, so its
// reactive stream is the plain encode of the frames; an all-zeros mask the other way round).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

constexpr double kTolerance = 1e-4;

std::array<int64_t, 3> stride_of(const WeightStore& masks) {
  const std::string text = masks.metadata().at("vae_stride");  // "[4, 8, 8]"
  std::array<int64_t, 3> s{};
  std::sscanf(text.c_str(), "[%ld, %ld, %ld]", &s[0], &s[1], &s[2]);
  return s;
}

TEST(VaceMasks, MaskLatentMatchesTheReferenceExactly) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const WeightStore masks = WeightStore::open(fixture("vace_masks.safetensors"));
  const auto stride = stride_of(masks);
  const at::Tensor mask = masks.get("mask");  // [1, T, H, W]
  const at::Tensor expected = masks.get("mask_latent");
  const at::Tensor ours = vace_mask_latent(mask, 0, stride);
  ASSERT_EQ(ours.sizes(), expected.sizes());
  EXPECT_EQ(max_abs_diff(ours, expected), 0.0);

  const at::Tensor with_ref = vace_mask_latent(mask, 1, stride);
  const at::Tensor expected_ref = masks.get("mask_latent_with_one_ref");
  ASSERT_EQ(with_ref.sizes(), expected_ref.sizes());
  EXPECT_EQ(max_abs_diff(with_ref, expected_ref), 0.0);

  // A mask the VAE's latent grid does not fit is refused with its shape.
  EXPECT_THROW(vace_mask_latent(mask.narrow(2, 0, mask.size(2) - 4), 0, stride), ConfigError);
}

TEST(VaceMasks, ContextIsTheLatentsThenTheMask) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const WeightStore masks = WeightStore::open(fixture("vace_masks.safetensors"));
  const at::Tensor context = vace_context(masks.get("encoded_frames"),
                                          vace_mask_latent(masks.get("mask"), 0, stride_of(masks)));
  ASSERT_EQ(context.sizes(), masks.get("vace_context").sizes());
  EXPECT_EQ(max_abs_diff(context, masks.get("vace_context")), 0.0);
  EXPECT_THROW(vace_context(masks.get("encoded_frames"), masks.get("mask_latent_with_one_ref")),
               ConfigError);
}

class VaceEncoderFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fixture_has("wanvae")) GTEST_SKIP() << "no wanvae fixtures";
    weights = WeightStore::open(fixture("wanvae_weights.safetensors"));
    io = WeightStore::open(fixture("wanvae_io.safetensors"));
    // encode.pixels is [1, 3, T, H, W]; control frames are [T, 3, H, W].
    frames = io.get("encode.pixels")[0].permute({1, 0, 2, 3}).contiguous();
    expected = io.get("encode.latents")[0].permute({1, 0, 2, 3});  // [z, F, h, w]
  }
  // VACE's masks fold 8x8 pixel blocks and the DiT patches 2x2 latents: frames of a fixture whose
  // size is not a multiple of 16 cannot be a VACE input (the encoder alone still can).
  bool vace_sized() const { return frames.size(2) % 16 == 0 && frames.size(3) % 16 == 0; }
  WeightStore weights, io;
  at::Tensor frames, expected;
};

TEST_F(VaceEncoderFixture, StreamingEncodeMatchesTheWholeVideo) {
  // The CPU's layout, and channels-last (the GPU's, explicit here so the CPU runs it too).
  for (DecoderLayout layout : {DecoderLayout::best, DecoderLayout::channels_last}) {
    SCOPED_TRACE(layout == DecoderLayout::channels_last ? "channels-last" : "default layout");
    WanVaeEncoderOptions options;
    options.layout = layout;
    WanVaeEncoder encoder(weights, options);
    WanVaeEncoder::Stream stream;
    const int64_t ts = encoder.config().temporal_scale();
    const at::Tensor video = frames.unsqueeze(0);
    const at::Tensor first = encoder.encode_next(video.narrow(1, 0, 1 + ts), stream);
    EXPECT_TRUE(stream.started());
    // A later call takes whole groups only.
    EXPECT_THROW(encoder.encode_next(video.narrow(1, 0, 1), stream), ConfigError);
    // The rest of the video in one later call (a fixture of 1 + ts frames has none).
    const int64_t later = video.size(1) - 1 - ts;
    const at::Tensor all =
        (later > 0
             ? at::cat({first, encoder.encode_next(video.narrow(1, 1 + ts, later), stream)}, 1)
             : first)[0]
            .permute({1, 0, 2, 3});
    EXPECT_LT(max_abs_diff(all, expected), kTolerance);
    stream.reset();
    EXPECT_FALSE(stream.started());
  }
}

// An encoder sharing another's converted weights (WanVaeEncoder::share: SessionFactory's inputs
// after the first) encodes what the original does, bit for bit, each stream its own.
TEST_F(VaceEncoderFixture, ASharedEncoderEncodesAsItsOriginal) {
  WanVaeEncoder original(weights, {});
  WanVaeEncoder shared = original.share();
  EXPECT_EQ(shared.config().temporal_scale(), original.config().temporal_scale());
  const int64_t ts = original.config().temporal_scale();
  const at::Tensor video = frames.unsqueeze(0);
  const int64_t first = std::min<int64_t>(video.size(1), 1 + ts);
  WanVaeEncoder::Stream a, b;
  // Interleaved: the two streams' memories stay apart although the weights are one.
  const at::Tensor a0 = original.encode_next(video.narrow(1, 0, first), a);
  const at::Tensor b0 = shared.encode_next(video.narrow(1, 0, first), b);
  EXPECT_TRUE(at::equal(a0, b0));
  if (video.size(1) >= first + ts) {
    const at::Tensor later = video.narrow(1, first, ts);
    EXPECT_TRUE(at::equal(shared.encode_next(later, b), original.encode_next(later, a)));
  }
  EXPECT_TRUE(at::equal(shared.encode(video.narrow(1, 0, first)), a0));
  // A context encoder over the shared one is the context encoder over the weights.
  if (!vace_sized()) return;
  VaceContextEncoder over_shared(original.share()), own(weights, {});
  const at::Tensor block = frames.narrow(0, 0, first);
  EXPECT_TRUE(at::equal(over_shared.encode(block, {}), own.encode(block, {})));
}

TEST_F(VaceEncoderFixture, AllOnesMaskEncodesTheFramesAsReactive) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder encoder(weights, {});
  const int64_t t = frames.size(0);
  // Two blocks (1 + temporal_scale frames, then the rest): each stream keeps its own cache
  // across them.
  const int64_t first = 1 + encoder.temporal_scale();
  if (t <= first) GTEST_SKIP() << "the fixture's video is a single block";
  const at::Tensor ones = at::ones({t, frames.size(2), frames.size(3)});
  const at::Tensor c0 = encoder.encode(frames.narrow(0, 0, first), ones.narrow(0, 0, first));
  const at::Tensor r0 = encoder.last_reactive(), i0 = encoder.last_inactive();
  const at::Tensor c1 =
      encoder.encode(frames.narrow(0, first, t - first), ones.narrow(0, first, t - first));
  const at::Tensor r1 = encoder.last_reactive(), i1 = encoder.last_inactive();
  const int64_t z = expected.size(0);
  EXPECT_LT(max_abs_diff(at::cat({r0, r1}, 1), expected), kTolerance);

  // Inactive pixels are all zero: its latents are the encoding of a black video, not zero.
  WanVaeEncoder plain(weights, {});
  const at::Tensor black =
      plain.encode(at::zeros_like(frames).unsqueeze(0))[0].permute({1, 0, 2, 3});
  EXPECT_LT(max_abs_diff(at::cat({i0, i1}, 1), black), kTolerance);

  // Context layout: inactive, reactive, 64 mask channels of ones.
  EXPECT_EQ(c0.size(0), encoder.channels());
  EXPECT_EQ(max_abs_diff(c0.narrow(0, 0, z), i0), 0.0);
  EXPECT_EQ(max_abs_diff(c0.narrow(0, z, z), r0), 0.0);
  EXPECT_EQ(c1.narrow(0, 2 * z, c1.size(0) - 2 * z).min().item<float>(), 1.0f);
}

TEST_F(VaceEncoderFixture, AllZerosMaskEncodesTheFramesAsInactive) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder encoder(weights, {});
  const at::Tensor zeros = at::zeros({frames.size(0), frames.size(2), frames.size(3)});
  const at::Tensor context = encoder.encode(frames, zeros);
  EXPECT_LT(max_abs_diff(encoder.last_inactive(), expected), kTolerance);
  const int64_t z = expected.size(0);
  EXPECT_EQ(context.narrow(0, 2 * z, context.size(0) - 2 * z).abs().max().item<float>(), 0.0f);
  // Masks are binarised at 0.5: 0.4 keeps, 0.6 generates.
  encoder.reset();
  encoder.encode(frames, at::full_like(zeros, 0.4));
  EXPECT_LT(max_abs_diff(encoder.last_inactive(), expected), kTolerance);
  encoder.reset();
  encoder.encode(frames, at::full_like(zeros, 0.6));
  EXPECT_LT(max_abs_diff(encoder.last_reactive(), expected), kTolerance);
}

// Inpainting (a mask that is not all ones): as Scope's vace_encode_frames, the reactive frames of
// each block are encoded as a video of their own (a fresh cache: first frame alone, then whole
// groups, the frames past the last whole group unused), while the inactive frames stream. An
// all-ones block after it streams the reactive frames on from where that stream was.
TEST_F(VaceEncoderFixture, MixedMaskEncodesEachBlocksReactiveFramesAlone) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder encoder(weights, {});
  WanVaeEncoder plain(weights, {});
  const int64_t ts = encoder.temporal_scale(), h = frames.size(2), w = frames.size(3);
  at::Generator rng = at::detail::createCPUGenerator(11);
  // Blocks of LongLive's sizes (1 + 2 ts, then 3 ts control frames), random pixels and masks.
  const at::Tensor b0 = at::rand({1 + 2 * ts, 3, h, w}, rng) * 2 - 1;
  const at::Tensor b1 = at::rand({3 * ts, 3, h, w}, rng) * 2 - 1;
  const at::Tensor m0 = (at::rand({b0.size(0), h, w}, rng) > 0.5).to(at::kFloat);
  const at::Tensor m1 = (at::rand({b1.size(0), h, w}, rng) > 0.5).to(at::kFloat);
  auto alone = [&](const at::Tensor& pixels) {  // [T, 3, H, W], T = 1 + k ts
    return plain.encode(pixels.unsqueeze(0))[0].permute({1, 0, 2, 3});
  };
  encoder.encode(b0, m0);
  EXPECT_LT(max_abs_diff(encoder.last_reactive(), alone(b0 * m0.unsqueeze(1))), kTolerance);
  encoder.encode(b1, m1);
  const at::Tensor r1 = encoder.last_reactive();
  const int64_t used = 1 + ts * ((b1.size(0) - 1) / ts);
  const at::Tensor expected_r1 = alone((b1 * m1.unsqueeze(1)).narrow(0, 0, used));
  ASSERT_EQ(r1.sizes(), expected_r1.sizes());
  EXPECT_EQ(r1.size(1), b1.size(0) / ts) << "the latent frames of a streamed block";
  EXPECT_LT(max_abs_diff(r1, expected_r1), kTolerance);
  // The inactive frames stream across both blocks.
  const at::Tensor inactive = at::cat({b0 * (1 - m0).unsqueeze(1), b1 * (1 - m1).unsqueeze(1)}, 0);
  const at::Tensor i_all = alone(inactive);
  EXPECT_LT(max_abs_diff(encoder.last_inactive(),
                         i_all.narrow(1, i_all.size(1) - r1.size(1), r1.size(1))),
            kTolerance);
  // Conditioning after it: the reactive stream, never started, starts with this block as a fresh
  // cache takes it, and streams on from there.
  const at::Tensor b2 = at::rand({3 * ts, 3, h, w}, rng) * 2 - 1;
  const at::Tensor b3 = at::rand({3 * ts, 3, h, w}, rng) * 2 - 1;
  const at::Tensor ones = at::ones({b2.size(0), h, w});
  encoder.encode(b2, ones);
  const at::Tensor r2 = encoder.last_reactive();
  EXPECT_EQ(r2.size(1), b2.size(0) / ts);
  EXPECT_LT(max_abs_diff(r2, alone(b2.narrow(0, 0, used))), kTolerance);
  encoder.encode(b3, ones);
  const at::Tensor r23 = alone(at::cat({b2.narrow(0, 0, used), b3}, 0));
  EXPECT_LT(max_abs_diff(encoder.last_reactive(),
                         r23.narrow(1, r23.size(1) - b3.size(0) / ts, b3.size(0) / ts)),
            kTolerance);
}

// Conditioning (an all-ones mask) encodes black inactive frames block after block. The inactive
// stream's memory converges to a fixed point (the first frame's effect fades through the
// temporal down-sampler's memory; ~10 blocks at the fixture's size); from there its latents are
// reused instead of encoded, and every block's context still equals a full encode's bit for bit,
// also across a block with another mask (inpainting) and after it.
TEST_F(VaceEncoderFixture, BlackInactiveFramesAreReusedAtTheirFixedPointExactly) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder reused(weights, {}), full(weights, {});
  full.set_reuse_fixed_inactive(false);
  const int64_t ts = reused.temporal_scale(), h = frames.size(2), w = frames.size(3);
  at::Generator rng = at::detail::createCPUGenerator(7);
  int64_t blocks = 0;
  auto encode_both = [&](bool inpainted) {
    const int64_t t = blocks == 0 ? 1 + 2 * ts : 3 * ts;  // LongLive's 9, then 12 control frames
    const at::Tensor block = at::rand({t, 3, h, w}, rng) * 2 - 1;
    const at::Tensor mask =
        inpainted ? (at::rand({t, h, w}, rng) > 0.5).to(at::kFloat) : at::Tensor();
    const at::Tensor actual = reused.encode(block, mask);
    const at::Tensor expected_context = full.encode(block, mask);
    EXPECT_TRUE(at::equal(actual, expected_context))
        << "block " << blocks << ": max |diff| " << max_abs_diff(actual, expected_context);
    ++blocks;
  };
  while (reused.inactive_encodes_skipped() == 0 && blocks < VaceContextEncoder::kFixedPointProbes)
    encode_both(false);
  ASSERT_GT(reused.inactive_encodes_skipped(), 0)
      << "no fixed point within " << VaceContextEncoder::kFixedPointProbes << " blocks";
  for (int i = 0; i < 3; ++i) encode_both(false);
  const int64_t skipped = reused.inactive_encodes_skipped();
  EXPECT_EQ(skipped, 4) << "every block once at the fixed point";
  encode_both(true);  // the inactive stream moves: encoded again
  EXPECT_EQ(reused.inactive_encodes_skipped(), skipped);
  for (int i = 0; i < 3; ++i) encode_both(false);
  EXPECT_EQ(full.inactive_encodes_skipped(), 0);
  // A new video starts the stream again: its first block is encoded.
  reused.reset();
  reused.encode(at::rand({1 + 2 * ts, 3, h, w}, rng) * 2 - 1, {});
  EXPECT_EQ(reused.inactive_encodes_skipped(), skipped);
}

// The conditioning mode's black inactive blocks, recorded by one input and taken by the next
// (BlackInactiveLatents): every block's context has the bits of an encoder without the record.
class BlackInactiveRecord : public VaceEncoderFixture {
 protected:
  // Frames of block `index` (LongLive's 9, then 12 control frames, or `frames` when given).
  at::Tensor block(int64_t index, int64_t frames = 0) {
    const int64_t ts = temporal_scale(), h = this->frames.size(2), w = this->frames.size(3);
    const int64_t t = frames > 0 ? frames : (index == 0 ? 1 + 2 * ts : 3 * ts);
    return at::rand({t, 3, h, w}, rng) * 2 - 1;
  }
  // Both encoders, block by block, on the same frames and mask; the contexts must be equal.
  void expect_same(VaceContextEncoder& shared, VaceContextEncoder& plain, const at::Tensor& frames,
                   const at::Tensor& mask, const std::string& what) {
    const at::Tensor a = shared.encode(frames, mask), b = plain.encode(frames, mask);
    EXPECT_TRUE(at::equal(a, b)) << what << ": max |diff| " << max_abs_diff(a, b);
  }
  int64_t height() const { return frames.size(2); }
  // The fixture VAE's control frames per latent frame (4 for the released one).
  int64_t temporal_scale() const { return WanVaeConfig::infer(weights).temporal_scale(); }
  int64_t width() const { return frames.size(3); }
  at::Generator rng = at::detail::createCPUGenerator(11);
};

TEST_F(BlackInactiveRecord, ALaterInputTakesTheRecordedBlocksWithTheSameBits) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  auto record = std::make_shared<BlackInactiveLatents>();
  // The first input records until the stream's fixed point, and 3 blocks past it.
  VaceContextEncoder first(weights, {}), plain(weights, {});
  first.share_black_inactive(record);
  int64_t blocks = 0, past_fixed = 0;
  for (; past_fixed < 3 && blocks < VaceContextEncoder::kFixedPointProbes; ++blocks) {
    expect_same(first, plain, block(blocks), {}, fmt::format("first input, block {}", blocks));
    if (record->at_fixed_point(height(), width())) ++past_fixed;
  }
  ASSERT_TRUE(record->at_fixed_point(height(), width()))
      << "no fixed point within " << VaceContextEncoder::kFixedPointProbes << " blocks";
  EXPECT_EQ(first.inactive_blocks_from_record(), 2)
      << "it encoded every block up to the fixed point's, whose latents the next 2 repeat";
  const int64_t recorded = record->blocks(height(), width());
  EXPECT_EQ(recorded, blocks - 2) << "the fixed point's block repeats, not recorded again";

  // A later input (new frames) takes every inactive block, its contexts as if encoded.
  VaceContextEncoder later(weights, {}), later_plain(weights, {});
  later.share_black_inactive(record);
  for (int64_t i = 0; i < blocks + 2; ++i)
    expect_same(later, later_plain, block(i), {}, fmt::format("later input, block {}", i));
  EXPECT_EQ(later.inactive_blocks_from_record(), blocks + 2);
  EXPECT_EQ(record->blocks(height(), width()), recorded);

  // A new video of the same input starts on the record again.
  later.reset();
  later_plain.reset();
  for (int64_t i = 0; i < 2; ++i)
    expect_same(later, later_plain, block(i), {}, fmt::format("after a reset, block {}", i));
  EXPECT_EQ(later.inactive_blocks_from_record(), blocks + 4);
}

TEST_F(BlackInactiveRecord, AnInputGoingFurtherThanTheRecordExtendsIt) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  auto record = std::make_shared<BlackInactiveLatents>();
  {
    VaceContextEncoder brief(weights, {}), plain(weights, {});
    brief.share_black_inactive(record);
    for (int64_t i = 0; i < 3; ++i)
      expect_same(brief, plain, block(i), {}, fmt::format("brief input, block {}", i));
  }
  EXPECT_EQ(record->blocks(height(), width()), 3);
  VaceContextEncoder longer(weights, {}), plain(weights, {});
  longer.share_black_inactive(record);
  for (int64_t i = 0; i < 7; ++i)
    expect_same(longer, plain, block(i), {}, fmt::format("longer input, block {}", i));
  EXPECT_EQ(longer.inactive_blocks_from_record(), 3) << "taken 3, then recorded the rest";
  EXPECT_EQ(record->blocks(height(), width()), 7);
}

// An encode of the record that fails (out of memory mid-way, here a frame count the stream does
// not take) may leave its memory half updated: the record starts over instead of encoding its
// next block from that memory, and the next input records it again, as encoding gives it.
TEST_F(BlackInactiveRecord, AFailedRecordingStartsTheRecordOver) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  auto record = std::make_shared<BlackInactiveLatents>();
  {
    VaceContextEncoder failing(weights, {});
    failing.share_black_inactive(record);
    failing.encode(block(0), {});
    failing.encode(block(1), {});
    ASSERT_EQ(record->blocks(height(), width()), 2);
    EXPECT_THROW(failing.encode(block(2, temporal_scale() + 1), {}), ConfigError);
  }
  EXPECT_EQ(record->blocks(height(), width()), 0);
  VaceContextEncoder next(weights, {}), plain(weights, {});
  next.share_black_inactive(record);
  for (int64_t i = 0; i < 3; ++i)
    expect_same(next, plain, block(i), {}, fmt::format("next input, block {}", i));
  EXPECT_EQ(record->blocks(height(), width()), 3);
}

TEST_F(BlackInactiveRecord, ABlockTheRecordCannotGiveRebuildsTheOwnStreamFirst) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  auto record = std::make_shared<BlackInactiveLatents>();
  int64_t to_fixed = 0;
  {
    VaceContextEncoder first(weights, {});
    first.share_black_inactive(record);
    for (; !record->at_fixed_point(height(), width()) &&
           to_fixed < VaceContextEncoder::kFixedPointProbes;
         ++to_fixed)
      first.encode(block(to_fixed), {});
  }
  ASSERT_TRUE(record->at_fixed_point(height(), width()));
  // Leaving it mid-way (an inpainted block, blocks of another length), before and after the
  // fixed point: the blocks after it are still what an encoder without the record gives.
  for (const int64_t leave_at : {int64_t{2}, to_fixed + 2}) {
    for (const bool inpaint : {true, false}) {
      SCOPED_TRACE(fmt::format("leaving at block {} with {}", leave_at,
                               inpaint ? "an inpainted block" : "blocks of 2 latent frames"));
      VaceContextEncoder shared(weights, {}), plain(weights, {});
      shared.share_black_inactive(record);
      for (int64_t i = 0; i < leave_at; ++i)
        expect_same(shared, plain, block(i), {}, fmt::format("block {}", i));
      EXPECT_EQ(shared.inactive_blocks_from_record(), leave_at);
      for (int64_t i = leave_at; i < leave_at + 3; ++i) {
        const at::Tensor frames = inpaint ? block(i) : block(i, 2 * temporal_scale());
        const at::Tensor mask =
            inpaint && i == leave_at
                ? (at::rand({frames.size(0), height(), width()}, rng) > 0.5).to(at::kFloat)
                : at::Tensor();
        expect_same(shared, plain, frames, mask, fmt::format("block {}", i));
      }
      EXPECT_EQ(shared.inactive_blocks_from_record(), leave_at) << "left for good";
    }
  }
}

// A paced camera's conditioning block encoded in parts as it is filmed (begin_parts ..
// end_parts) gives the context of the whole block encoded at once, bit for bit: block after
// block past the inactive stream's fixed point, on and off the shared record, with references,
// parts of one group or several, and across an inpainted block.
TEST_F(BlackInactiveRecord, ABlockEncodedInPartsIsTheWholeBlockBitForBit) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  const int64_t ts = temporal_scale();
  const at::Tensor reference = block(0, 1);
  for (const bool on_record : {false, true}) {
    SCOPED_TRACE(on_record ? "taking the shared record" : "without a record");
    auto record = std::make_shared<BlackInactiveLatents>();
    VaceContextEncoder parts(weights, {}), whole(weights, {});
    if (on_record) parts.share_black_inactive(record);  // `whole` encodes its own
    EXPECT_THROW(parts.begin_parts(3 * ts), ConfigError) << "a video's first block is whole";
    const at::Tensor first = block(0);
    EXPECT_TRUE(at::equal(parts.encode(first, {}), whole.encode(first, {})));
    // Parts of one group, of two then one, all at once; references in front on some blocks.
    const std::vector<std::vector<int64_t>> splits = {{1, 1, 1}, {2, 1}, {3}};
    int64_t index = 1;
    auto encode_block = [&](const std::vector<int64_t>& groups, bool with_reference) {
      const at::Tensor frames = block(index);
      const at::Tensor refs = with_reference ? reference : at::Tensor();
      parts.begin_parts(frames.size(0));
      int64_t begin = 0;
      for (const int64_t g : groups) {
        parts.encode_part(frames.narrow(0, begin, g * ts));
        begin += g * ts;
      }
      const at::Tensor actual = parts.end_parts(refs), expected = whole.encode(frames, {}, refs);
      EXPECT_TRUE(at::equal(actual, expected))
          << "block " << index << ": max |diff| " << max_abs_diff(actual, expected);
      ++index;
    };
    // Past the inactive stream's fixed point, and 2 blocks more.
    for (int64_t past = 0; past < 3 && index < VaceContextEncoder::kFixedPointProbes;) {
      encode_block(splits[static_cast<size_t>(index) % splits.size()], index % 4 == 0);
      if (parts.inactive_encodes_skipped() > 0 || record->at_fixed_point(height(), width())) ++past;
    }
    ASSERT_TRUE(parts.inactive_encodes_skipped() > 0 || record->at_fixed_point(height(), width()))
        << "no fixed point within " << VaceContextEncoder::kFixedPointProbes << " blocks";
    // An inpainted block (whole: inpainting is not read in parts), then parts again.
    const at::Tensor inpainted = block(index);
    const at::Tensor mask =
        (at::rand({inpainted.size(0), height(), width()}, rng) > 0.5).to(at::kFloat);
    EXPECT_TRUE(at::equal(parts.encode(inpainted, mask), whole.encode(inpainted, mask)));
    ++index;
    for (int i = 0; i < 2; ++i) encode_block(splits[static_cast<size_t>(i)], false);
  }
}

TEST_F(VaceEncoderFixture, PartsThatDoNotMakeTheBlockAreRefused) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder encoder(weights, {});
  const int64_t ts = encoder.temporal_scale(), h = frames.size(2), w = frames.size(3);
  auto black = [&](int64_t t, int64_t height, int64_t width) {
    return at::zeros({t, 3, height, width});
  };
  encoder.encode(black(1 + ts, h, w), {});  // the video's first block
  EXPECT_THROW(encoder.encode_part(black(ts, h, w)), ConfigError) << "no block begun";
  EXPECT_THROW(encoder.begin_parts(ts + 1), ConfigError) << "not whole groups";
  encoder.begin_parts(2 * ts);
  EXPECT_THROW(encoder.encode(black(ts, h, w), {}), Error) << "a whole block while in parts";
  EXPECT_THROW(encoder.encode_part(black(ts + 1, h, w)), ConfigError) << "not whole groups";
  encoder.encode_part(black(ts, h, w));
  EXPECT_THROW(encoder.encode_part(black(ts, h + 16, w)), ConfigError) << "another size";
  EXPECT_THROW(encoder.encode_part(black(2 * ts, h, w)), ConfigError) << "past the block";
  EXPECT_THROW(encoder.end_parts(), ConfigError) << "a part missing";
  // The block given up: the next one begins afresh.
  encoder.begin_parts(ts);
  encoder.encode_part(black(ts, h, w));
  EXPECT_EQ(encoder.end_parts().size(1), 1);
}

TEST_F(VaceEncoderFixture, ReferenceImagesAreEncodedAloneInFront) {
  if (!vace_sized()) GTEST_SKIP() << "fixture frames are not a multiple of 16";
  VaceContextEncoder encoder(weights, {});
  // The reference's first latent frame is its first pixel frame encoded alone.
  const at::Tensor image = frames.narrow(0, 0, 1);
  const at::Tensor ref_only = encoder.encode_references(image);
  const int64_t z = expected.size(0);
  ASSERT_EQ(ref_only.size(0), encoder.channels());
  ASSERT_EQ(ref_only.size(1), 1);
  EXPECT_LT(max_abs_diff(ref_only.narrow(0, 0, z), expected.narrow(1, 0, 1)), kTolerance);
  EXPECT_EQ(ref_only.narrow(0, z, ref_only.size(0) - z).abs().max().item<float>(), 0.0f);

  // In front of control frames: its latent, zeros for the reactive half and the mask.
  const at::Tensor context = encoder.encode(frames, at::Tensor(), image);
  ASSERT_EQ(context.size(1), 1 + expected.size(1));
  const at::Tensor front = context.select(1, 0);
  EXPECT_LT(max_abs_diff(front.narrow(0, 0, z), expected.select(1, 0)), kTolerance);
  EXPECT_EQ(front.narrow(0, z, front.size(0) - z).abs().max().item<float>(), 0.0f);
  // The control frames follow, their stream unaffected by the reference's encode.
  EXPECT_LT(max_abs_diff(context.narrow(1, 1, expected.size(1)).narrow(0, z, z), expected),
            kTolerance);
  EXPECT_THROW(encoder.encode_references(frames.narrow(1, 0, 1)), ConfigError);
}

}  // namespace
}  // namespace longlive::test
