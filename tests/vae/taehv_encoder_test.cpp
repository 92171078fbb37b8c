// TAEHV encoder against the reference encode (tests/data/taehv_encoder_io.safetensors, written by
// tests/reference/make_fixtures.py --only taehv_encoder from taehv.py@1f14a568): every case the
// file holds, its sizes read from the tensors.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "longlive/error.h"
#include "longlive/taehv.h"
#include "longlive/vace.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

const std::filesystem::path kFixture = std::filesystem::path(LONGLIVE_TEST_SOURCE_DIR) / "tests" /
                                       "data" / "taehv_encoder_io.safetensors";

struct Fixture {
  WeightStore io = WeightStore::open(kFixture);
  TaehvEncoder encoder{io};
  int64_t cases() const {
    return static_cast<int64_t>(nlohmann::json::parse(io.metadata().at("cases")).size());
  }
  // [T, 3, H, W] in [0, 1]
  at::Tensor frames(int64_t c) const { return io.get(fmt::format("case{}.frames", c))[0]; }
  at::Tensor latents(int64_t c, const char* which = "latents") const {
    return io.get(fmt::format("case{}.{}", c, which))[0];  // [F, 16, h, w]
  }
  int64_t odd_frames(int64_t c) const {
    return nlohmann::json::parse(io.metadata().at("cases"))[c].at("odd_frames").get<int64_t>();
  }
};

TEST(TaehvEncoder, WholeVideoMatchesReference) {
  const Fixture f;
  ASSERT_GT(f.cases(), 0);
  for (int64_t c = 0; c < f.cases(); ++c) {
    SCOPED_TRACE(fmt::format("case {}", c));
    TaehvEncoder::Stream stream;
    const at::Tensor got = f.encoder.encode_next(f.frames(c), stream);
    const at::Tensor expected = f.latents(c);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LT(max_abs_diff(got, expected), 1e-4);
  }
}

// Streamed a group of 4 frames per call (a camera's blocks in parts), and a pass per group inside
// one call: the reference's whole-video latents.
TEST(TaehvEncoder, StreamedGroupsMatchTheWholeVideo) {
  const Fixture f;
  for (int64_t c = 0; c < f.cases(); ++c) {
    SCOPED_TRACE(fmt::format("case {}", c));
    const at::Tensor frames = f.frames(c);
    const at::Tensor expected = f.latents(c);
    TaehvEncoder::Stream stream;
    std::vector<at::Tensor> parts;
    for (int64_t t = 0; t < frames.size(0); t += TaehvEncoder::kTimeDownscale)
      parts.push_back(
          f.encoder.encode_next(frames.narrow(0, t, TaehvEncoder::kTimeDownscale), stream));
    EXPECT_LT(max_abs_diff(at::cat(parts, 0), expected), 1e-4);
    TaehvEncoder::Stream passes;
    EXPECT_LT(
        max_abs_diff(f.encoder.encode_next(frames, passes, TaehvEncoder::kTimeDownscale), expected),
        1e-4);
  }
}

// A count that is not a multiple of 4 is padded at the end with its last frame, as the reference.
TEST(TaehvEncoder, AnOddCountIsPaddedWithTheLastFrame) {
  const Fixture f;
  for (int64_t c = 0; c < f.cases(); ++c) {
    SCOPED_TRACE(fmt::format("case {}", c));
    TaehvEncoder::Stream stream;
    const at::Tensor got = f.encoder.encode_next(f.frames(c).narrow(0, 0, f.odd_frames(c)), stream);
    const at::Tensor expected = f.latents(c, "latents_odd");
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LT(max_abs_diff(got, expected), 1e-4);
  }
}

TEST(TaehvEncoder, BadInputIsAClearError) {
  const Fixture f;
  TaehvEncoder::Stream stream;
  EXPECT_THROW(f.encoder.encode_next(at::zeros({4, 3, 12, 16}), stream), ConfigError);  // 12 % 8
  EXPECT_THROW(f.encoder.encode_next(at::zeros({4, 1, 16, 16}), stream), ConfigError);
  EXPECT_THROW(f.encoder.encode_next(at::zeros({4, 3, 16, 16}), stream, 6), ConfigError);
  WeightStore missing;
  for (const auto& name : f.io.names())
    if (name != "encoder.9.conv.2.weight" && name.rfind("encoder.", 0) == 0)
      missing.add(name, f.io.get(name), f.io.source_of(name));
  try {
    TaehvEncoder broken(missing);
    FAIL() << "built without encoder.9.conv.2.weight";
  } catch (const WeightError& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.9.conv.2.weight"), std::string::npos) << e.what();
  }
}

TEST(TaehvEncoder, RandomWeightsHaveTheReferenceLayout) {
  const Fixture f;
  const WeightStore random = make_random_taehv_encoder_weights(1);
  std::vector<std::string> fixture_names;
  for (const auto& name : f.io.names())
    if (name.rfind("encoder.", 0) == 0) fixture_names.push_back(name);
  EXPECT_EQ(random.names(), fixture_names);
  for (const auto& name : fixture_names)
    EXPECT_EQ(random.get(name).sizes(), f.io.get(name).sizes());
}

// ---- VACE over TAEHV's encoder (a preset's input_encoder: taehv) --------------------------------

// Control frames in [-1, 1]: the fixture's pictures, as a VACE input hands them over.
at::Tensor control_frames(const Fixture& f, int64_t c) { return f.frames(c) * 2 - 1; }

// A case's frames as a VACE input's blocks: a stream's first block (1 + 4k frames, k >= 1 where
// the case has frames for it) and a later one of whole groups of 4.
struct Blocks {
  at::Tensor frames;  // [T, 3, H, W] in [-1, 1]
  int64_t first = 0, later = 0;
  at::Tensor first_block() const { return frames.narrow(0, 0, first); }
  at::Tensor later_block() const { return frames.narrow(0, first, later); }
};
Blocks blocks_of(const Fixture& f, int64_t c) {
  Blocks b{control_frames(f, c)};
  b.first = 1 + 4 * ((b.frames.size(0) - 1) / 4 / 2);
  b.later = 4 * ((b.frames.size(0) - b.first) / 4);
  return b;
}
// A VACE session's size (latents of whole 2x2 DiT patches: multiples of 16 pixels) and frames
// for a later block.
bool vace_sized(const Blocks& b) {
  return b.frames.size(2) % 16 == 0 && b.frames.size(3) % 16 == 0 && b.later >= 4;
}
// The first case that is (nullopt: none).
std::optional<Blocks> vace_blocks(const Fixture& f) {
  for (int64_t c = 0; c < f.cases(); ++c)
    if (Blocks b = blocks_of(f, c); vace_sized(b)) return b;
  return std::nullopt;
}

// The fixture's encoder, shared as the factory shares it, and its first VACE-sized case.
class VaceOverTaehv : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto found = vace_blocks(f);
    ASSERT_TRUE(found) << "no case of a VACE session's size in " << kFixture;
    blocks = *found;
  }
  const Fixture f;
  const std::shared_ptr<const TaehvEncoder> taehv = std::make_shared<const TaehvEncoder>(f.io);
  Blocks blocks;
};

// The 96 channels are TAEHV's latents of the black inactive frames (zeros in [-1, 1]) and of the
// frames themselves, each stream with its own memory, then the all-ones mask; the first block's
// 1 + 4k frames padded at the end with the last one, as TAEHV's reference pads a video.
TEST_F(VaceOverTaehv, TheContextIsTaehvsLatentsOfBothStreamsThenTheMask) {
  int64_t checked = 0;
  for (int64_t c = 0; c < f.cases(); ++c) {
    SCOPED_TRACE(fmt::format("case {}", c));
    const Blocks each = blocks_of(f, c);  // every VACE-sized case, not only the first
    if (!vace_sized(each)) continue;
    ++checked;
    const at::Tensor& frames = each.frames;
    const int64_t first = each.first, later = each.later;
    VaceContextEncoder vace(taehv);
    EXPECT_TRUE(vace.runs_taehv());
    EXPECT_EQ(vace.temporal_scale(), 4);
    TaehvEncoder::Stream reactive, inactive;
    for (const auto& [begin, count] : {std::pair{int64_t{0}, first}, std::pair{first, later}}) {
      const at::Tensor block = frames.narrow(0, begin, count);
      const at::Tensor context = vace.encode(block, at::Tensor());
      const int64_t latent_frames = (count + 3) / 4;
      ASSERT_EQ(context.sizes(),
                at::IntArrayRef({96, latent_frames, frames.size(2) / 8, frames.size(3) / 8}));
      const at::Tensor expected_reactive =
          taehv->encode_next((block + 1) * 0.5, reactive).permute({1, 0, 2, 3});
      const at::Tensor expected_inactive =
          taehv->encode_next(at::full_like(block, 0.5), inactive).permute({1, 0, 2, 3});
      EXPECT_EQ(max_abs_diff(vace.last_reactive(), expected_reactive), 0.0);
      EXPECT_EQ(max_abs_diff(vace.last_inactive(), expected_inactive), 0.0);
      EXPECT_EQ(max_abs_diff(context.narrow(0, 0, 16), expected_inactive), 0.0);
      EXPECT_EQ(max_abs_diff(context.narrow(0, 16, 16), expected_reactive), 0.0);
      EXPECT_EQ(max_abs_diff(context.narrow(0, 32, 64), at::ones_like(context.narrow(0, 32, 64))),
                0.0);
    }
    // The Wan VAE's black record is not TAEHV's: sharing one leaves this encoder on its own.
    vace.share_black_inactive(std::make_shared<BlackInactiveLatents>());
    EXPECT_EQ(vace.inactive_blocks_from_record(), 0);
  }
  EXPECT_GT(checked, 0) << "no case of a VACE session's size in " << kFixture;
}

// The conditioning mode's black inactive stream reaches a fixed point (a memory block looks one
// step back, so the memory of black frames stops changing), and from there its latents are
// reused: every block's context as encoding them all gives, bit for bit.
TEST_F(VaceOverTaehv, BlackInactiveFramesAreReusedAtTheirFixedPointExactly) {
  const at::Tensor& frames = blocks.frames;
  const int64_t first = blocks.first, later = blocks.later;
  VaceContextEncoder reusing(taehv), encoding(taehv);
  encoding.set_reuse_fixed_inactive(false);
  for (VaceContextEncoder* e : {&reusing, &encoding})
    EXPECT_EQ(e->encode(frames.narrow(0, 0, first), at::Tensor()).size(0), 96);
  constexpr int kBlocks = 10;
  for (int b = 0; b < kBlocks; ++b) {
    // Other frames each block (the reactive stream moves on), black inactive frames throughout.
    const at::Tensor block = frames.narrow(0, first, later).roll(b, 3);
    EXPECT_EQ(
        max_abs_diff(reusing.encode(block, at::Tensor()), encoding.encode(block, at::Tensor())),
        0.0)
        << "block " << b + 1;
  }
  EXPECT_GT(reusing.inactive_encodes_skipped(), 0);
  EXPECT_EQ(encoding.inactive_encodes_skipped(), 0);
  // A mask that is not all ones leaves the fixed point: its inactive frames are encoded.
  const int64_t skipped = reusing.inactive_encodes_skipped();
  at::Tensor mask = at::ones({later, frames.size(2), frames.size(3)});
  mask.narrow(1, 0, frames.size(2) / 2).zero_();
  reusing.encode(frames.narrow(0, first, later), mask);
  EXPECT_EQ(reusing.inactive_encodes_skipped(), skipped);
}

// A camera's block encoded in parts as it is filmed equals the same block read whole with a
// group per pass (its replay), bit for bit; and a group per pass stays within rounding of one pass.
TEST_F(VaceOverTaehv, ABlockEncodedInPartsIsTheWholeBlockBitForBit) {
  const at::Tensor& frames = blocks.frames;
  const int64_t first = blocks.first, later = blocks.later;
  VaceContextEncoder whole(taehv), parts(taehv), one_pass(taehv);
  whole.set_frame_groups_per_pass(1);
  parts.set_frame_groups_per_pass(1);
  for (VaceContextEncoder* e : {&whole, &parts, &one_pass})
    e->encode(frames.narrow(0, 0, first), at::Tensor());
  const at::Tensor expected = whole.encode(frames.narrow(0, first, later), at::Tensor());
  parts.begin_parts(later);
  for (int64_t t = 0; t < later; t += 4) parts.encode_part(frames.narrow(0, first + t, 4));
  EXPECT_EQ(max_abs_diff(parts.end_parts(), expected), 0.0);
  EXPECT_LT(max_abs_diff(one_pass.encode(frames.narrow(0, first, later), at::Tensor()), expected),
            1e-4);
}

// Reference images: each alone through a fresh memory (4 copies of it: one latent frame), in
// front; inpainting's reactive frames: each block alone (a fresh memory), as over the Wan VAE.
TEST_F(VaceOverTaehv, ReferencesAndInpaintedBlocksTakeAFreshMemory) {
  const at::Tensor& frames = blocks.frames;
  const at::Tensor image = frames.narrow(0, 0, 1);
  VaceContextEncoder vace(taehv);
  TaehvEncoder::Stream fresh;
  const at::Tensor expected_ref = taehv->encode_next((image + 1) * 0.5, fresh);  // [1, 16, h, w]
  const at::Tensor refs = vace.encode_references(image);
  ASSERT_EQ(refs.size(0), 96);
  EXPECT_EQ(max_abs_diff(refs.narrow(0, 0, 16), expected_ref.permute({1, 0, 2, 3})), 0.0);
  EXPECT_EQ(refs.narrow(0, 16, 80).abs().max().item<float>(), 0.0f);

  const at::Tensor block = frames.narrow(0, 0, 4);
  at::Tensor mask = at::zeros({4, block.size(2), block.size(3)});
  mask.narrow(1, 0, block.size(2) / 2).fill_(1);  // the top half generated
  const at::Tensor context = vace.encode(block, mask, image);
  TaehvEncoder::Stream alone;
  const at::Tensor reactive =
      taehv->encode_next((block * mask.unsqueeze(1) + 1) * 0.5, alone).permute({1, 0, 2, 3});
  EXPECT_EQ(max_abs_diff(vace.last_reactive(), reactive), 0.0);
  EXPECT_EQ(context.size(1), 1 + reactive.size(1));  // the reference image in front
}

// On the GPU (skipped without CUDA): fp32 (TF32 off) at the reference, fp16 (the factory's) close
// to it, and a camera's block in parts bit for bit the block read whole a group per pass.
TEST(TaehvEncoderGpu, Fp32MatchesTheReferenceFp16StaysCloseAndPartsAreTheWhole) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
  auto& context = at::globalContext();
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
  const Fixture f;
  const at::Device cuda(at::kCUDA, 0);
  const TaehvEncoder fp32(f.io, cuda, at::kFloat), fp16(f.io, cuda, at::kHalf);
  for (int64_t c = 0; c < f.cases(); ++c) {
    SCOPED_TRACE(fmt::format("case {}", c));
    const at::Tensor expected = f.latents(c);
    TaehvEncoder::Stream a, b;
    const at::Tensor got = fp32.encode_next(f.frames(c), a).cpu();
    EXPECT_LT(max_abs_diff(got, expected), 1e-3);
    const at::Tensor half = fp16.encode_next(f.frames(c), b).cpu();
    EXPECT_LT((half - expected).norm().item<double>() / expected.norm().item<double>(), 1e-2);
  }
  const auto shared = std::make_shared<const TaehvEncoder>(f.io, cuda, at::kHalf);
  const auto blocks = vace_blocks(f);
  ASSERT_TRUE(blocks) << "no case of a VACE session's size in " << kFixture;
  const at::Tensor& frames = blocks->frames;
  const int64_t first = blocks->first, later = blocks->later;
  VaceContextEncoder whole(shared), parts(shared);
  for (VaceContextEncoder* e : {&whole, &parts}) {
    e->set_frame_groups_per_pass(1);
    e->encode(frames.narrow(0, 0, first), at::Tensor());
  }
  const at::Tensor expected = whole.encode(frames.narrow(0, first, later), at::Tensor()).cpu();
  parts.begin_parts(later);
  for (int64_t t = 0; t < later; t += 4) parts.encode_part(frames.narrow(0, first + t, 4));
  EXPECT_EQ(max_abs_diff(parts.end_parts().cpu(), expected), 0.0);
}

}  // namespace
}  // namespace longlive::test
