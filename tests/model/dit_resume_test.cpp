// Handing a running stream to another generator (a hot preset change): the frame counter, noise
// and conditioning carry on, and the next block re-caches the window as a prompt switch does.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "dit_fixture.h"
#include "longlive/error.h"

namespace longlive::test {
namespace {

struct Stream : DitStream {
  Stream() { options = one_block_sink(options); }
  // The sink is one block: its K/V then come from a context pass that attends only its own
  // block, which re-encoding the sink's latents reproduces exactly.
  static GeneratorOptions one_block_sink(GeneratorOptions o) {
    o.sink_frames = o.frames_per_block;
    o.local_attn_frames = std::max(o.local_attn_frames, o.sink_frames + 2 * o.frames_per_block);
    return o;
  }
  std::unique_ptr<StreamGenerator> started(const GeneratorOptions& o, int64_t blocks) const {
    return DitStream::started(o, blocks, 11);
  }
  int64_t blocks_past_window() const { return DitStream::blocks_past_window(options); }
};

// A hand-over to the same options is a prompt switch to the conditioning it had: bit-identical
// blocks, before the window fills (the re-cache starts at frame 0) and after (the sink is
// re-encoded from its latents, the window re-cached after it), with and without a pending cut.
TEST(DitResume, SameOptionsEqualASwitchToTheSameConditioning) {
  const Stream s;
  for (const bool global_sink : {true, false}) {
    GeneratorOptions o = s.options;
    o.global_sink = global_sink;
    for (const int64_t blocks : {int64_t{1}, s.blocks_past_window()}) {
      for (const bool pending_cut : {false, true}) {
        const std::string what = fmt::format("global_sink {}, {} blocks, pending cut {}",
                                             global_sink, blocks, pending_cut);
        auto reference = s.started(o, static_cast<int>(blocks));
        auto handed = s.started(o, static_cast<int>(blocks));
        const at::Tensor next = pending_cut ? s.prompt("B") : s.prompt("A");
        if (pending_cut) handed->switch_prompt(next);
        reference->switch_prompt(next);

        StreamGenerator resumed(handed->model(), o);
        resumed.resume(handed->release_state());
        EXPECT_EQ(resumed.frames_generated(), reference->frames_generated()) << what;
        for (int i = 0; i < 3; ++i) {
          const at::Tensor expected = reference->next_block();
          const at::Tensor actual = resumed.next_block();
          EXPECT_TRUE(at::equal(actual, expected))
              << what << ", block " << i << ": max |diff| " << max_abs_diff(actual, expected);
        }
        EXPECT_EQ(resumed.blocks_generated(), reference->blocks_generated()) << what;
        EXPECT_FALSE(handed->started()) << "a released generator must be started again";
      }
    }
  }
}

// Another preset (fewer steps, a shorter window, int8 KV): the video goes on from its frame with
// the same noise draws, conditioned as before; the result differs from staying on the old preset
// but only from the hand-over on.
TEST(DitResume, AnotherPresetContinuesTheFrameCounterAndTheNoise) {
  const Stream s;
  GeneratorOptions next = s.options;
  next.denoising_steps = {1000, 500};
  next.local_attn_frames = next.sink_frames + next.frames_per_block;
  next.kv_dtype = at::kChar;
  const int blocks = static_cast<int>(s.blocks_past_window());
  auto old = s.started(s.options, blocks);
  auto stay = s.started(s.options, blocks);
  StreamGenerator resumed(old->model(), next);
  resumed.resume(old->release_state());
  EXPECT_EQ(resumed.frames_generated(), blocks * s.options.frames_per_block);
  const at::Tensor a = resumed.next_block(), b = stay->next_block();
  EXPECT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  EXPECT_FALSE(at::equal(a, b));
  EXPECT_EQ(resumed.stats().recaches, 1);
  // A longer window than the stream handed over: the re-cache uses the frames it has.
  GeneratorOptions longer = s.options;
  longer.local_attn_frames = s.options.local_attn_frames + 2 * s.options.frames_per_block;
  StreamGenerator grown(resumed.model(), longer);
  grown.resume(resumed.release_state());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::isfinite(grown.next_block()).all().item<bool>());
  EXPECT_EQ(grown.frames_generated(), (blocks + 4) * s.options.frames_per_block);
}

TEST(DitResume, OtherLatentSizesAndUnstartedStreamsAreRejected) {
  const Stream s;
  auto g = s.started(s.options, 1);
  GeneratorOptions bigger = s.options;
  bigger.latent_height += 2 * bigger.model.patch[1];
  StreamGenerator other(g->model(), bigger);
  try {
    other.resume(g->release_state());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("keeps the video size"), std::string::npos) << e.what();
  }
  StreamGenerator fresh(g->model(), s.options);
  EXPECT_THROW(fresh.release_state(), Error);
  GeneratorOptions other_dtype = s.options;
  other_dtype.runtime.fused_kernels = !other_dtype.runtime.fused_kernels;
  EXPECT_THROW(StreamGenerator(g->model(), other_dtype), Error);
}

}  // namespace
}  // namespace longlive::test
