// Sequence parallelism (docs/multi-gpu.md): a stream computed by 2 and 3 in-process ranks over
// c10d's Gloo equals the one-rank stream (float32, CPU), through a prompt switch before the
// window is full and blocks past it (the sink and the window's roll).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <functional>
#include <thread>
#include <vector>

#include "dit_fixture.h"
#include "longlive/error.h"
#include "model/causal_wan.h"
#include "parallel/rank_group.h"

namespace longlive::test {
namespace {

TEST(RowShard, CoversEveryRowOnceAsEvenlyAsPossible) {
  for (int64_t rows : {1, 2, 7, 64, 1560, 4681})
    for (int ranks = 1; ranks <= 5; ++ranks) {
      int64_t next = 0, smallest = rows, largest = 0;
      for (int r = 0; r < ranks; ++r) {
        const RowShard s = RowShard::of(rows, r, ranks);
        EXPECT_EQ(s.begin, next) << rows << " rows, rank " << r << " of " << ranks;
        next = s.begin + s.count;
        smallest = std::min(smallest, s.count);
        largest = std::max(largest, s.count);
      }
      EXPECT_EQ(next, rows) << rows << " rows over " << ranks;
      EXPECT_LE(largest - smallest, 1) << rows << " rows over " << ranks;
    }
  EXPECT_THROW(RowShard::of(10, 2, 2), Error);
}

TEST(RankGroup, AllGatherRowsJoinsUnevenSharesInRankOrder) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  const int ranks = 3;
  const int64_t total = 7;  // 3 + 2 + 2 rows
  auto groups = RankGroup::create_local(ranks, RankBackend::gloo);
  const at::Tensor whole = at::arange(total * 4, at::kFloat).view({1, total, 4});
  std::vector<at::Tensor> gathered(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      const RowShard s = groups[static_cast<size_t>(r)]->shard(total);
      gathered[static_cast<size_t>(r)] = groups[static_cast<size_t>(r)]->all_gather_rows(
          whole.narrow(1, s.begin, s.count), 1, total);
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; ++r)
    EXPECT_TRUE(at::equal(gathered[static_cast<size_t>(r)], whole)) << r;
  // A rank holding other rows than its share is a caller's bug: named, not gathered.
  EXPECT_THROW(groups[0]->all_gather_rows(whole, 1, total), Error);
}

struct Stream : DitStream {
  // A switch after the first block (the window not yet full), then blocks past the window.
  int blocks() const { return static_cast<int>(blocks_past_window(options)); }
  std::vector<at::Tensor> run(StreamGenerator& g) const {
    std::vector<at::Tensor> out;
    g.start(prompt("A"), 5);
    for (int i = 0; i < blocks(); ++i) {
      if (i == 1) g.switch_prompt(prompt("B"));
      out.push_back(g.next_block());
    }
    return out;
  }
};

// Every rank returns every block (ParallelStream hands out rank 0's); all must equal one rank's.
std::vector<std::vector<at::Tensor>> run_ranks(const Stream& s, ParallelStream& p) {
  std::vector<std::vector<at::Tensor>> out(static_cast<size_t>(p.ranks()));
  p.each([&](StreamGenerator& g, int) { g.start(s.prompt("A"), 5); });
  for (int i = 0; i < s.blocks(); ++i) {
    if (i == 1) p.each([&](StreamGenerator& g, int) { g.switch_prompt(s.prompt("B")); });
    p.each(
        [&](StreamGenerator& g, int r) { out[static_cast<size_t>(r)].push_back(g.next_block()); });
  }
  return out;
}

int64_t rows_per_block(const Stream& s, const WanConfig& c) {
  return s.options.frames_per_block / c.patch[0] * (s.options.latent_height / c.patch[1]) *
         (s.options.latent_width / c.patch[2]);
}

TEST(SequenceParallel, RanksReproduceTheOneRankStream) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  const Stream s;
  StreamGenerator one(s.weights, s.options);
  const std::vector<at::Tensor> expected = s.run(one);
  const int64_t rows = rows_per_block(s, one.model()->config());
  for (const int ranks : {2, 3}) {
    ASSERT_GE(rows, ranks) << "the fixture's block is too small to split";
    auto p =
        ParallelStream::create(std::vector<const StreamGenerator*>(ranks, &one), RankBackend::gloo);
    const auto actual = run_ranks(s, *p);
    for (int r = 0; r < ranks; ++r) {
      ASSERT_EQ(actual[static_cast<size_t>(r)].size(), expected.size());
      for (size_t b = 0; b < expected.size(); ++b)
        EXPECT_LT(max_abs_diff(actual[static_cast<size_t>(r)][b], expected[b]), 1e-5)
            << fmt::format("{} ranks ({} rows per block), rank {}, block {}", ranks, rows, r, b);
    }
    // K and V of every layer and call, and the output rows, came from the other ranks.
    EXPECT_GT(p->bytes_received(), 0);
  }
}

// The one-GPU box: two ranks on one device (Gloo moves CUDA tensors through the host) match one
// rank there, in float32 on the plain layer loop.
TEST(SequenceParallel, TwoRanksOnOneGpuMatchOneRank) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  Stream s;
  s.options.device = at::Device(at::kCUDA, 0);
  StreamGenerator one(s.weights, s.options);
  const std::vector<at::Tensor> expected = s.run(one);
  auto p = ParallelStream::create({&one, &one}, RankBackend::gloo);
  const auto actual = run_ranks(s, *p);
  for (int r = 0; r < 2; ++r)
    for (size_t b = 0; b < expected.size(); ++b)
      EXPECT_LT(max_abs_diff(actual[static_cast<size_t>(r)][b], expected[b]), 1e-4)
          << "rank " << r << ", block " << b;
}

// Per-block inputs reach every rank (as `generate --gpus` hands them over): a VACE context (each
// rank computing its rows of the hints), then video-to-video latents on top, then VACE cleared;
// the ranks still make the one-rank stream. Sizes, weights and the context come from the VACE
// fixture.
TEST(SequenceParallel, VaceAndVideoToVideoInputsOnEveryRankKeepTheOneRankStream) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  const WeightStore weights = WeightStore::open(fixture("vace_dit_weights.safetensors"));
  const WeightStore module = WeightStore::open(fixture("vace_module.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("vace_stream.safetensors"));
  const GeneratorOptions fixture_options = options_from_stream(stream);
  at::Tensor context, prompt;
  for (const auto& call : metadata_json(stream, "calls")) {
    if (!prompt.defined() && call.contains("prompt"))
      prompt = stream.get("prompt." + call.at("prompt").get<std::string>()).to(at::kFloat);
    if (!context.defined() && call.contains("vace"))
      context = stream.get(call.at("vace").at("context").get<std::string>());
  }
  ASSERT_TRUE(context.defined() && prompt.defined()) << "the VACE fixture records no context";
  auto gen = at::detail::createCPUGenerator(17);
  const at::Tensor v2v_latents =
      at::randn({1, fixture_options.frames_per_block, fixture_options.model.in_channels,
                 fixture_options.latent_height, fixture_options.latent_width},
                gen);
  const int blocks =
      static_cast<int>(fixture_options.local_attn_frames / fixture_options.frames_per_block + 2);
  // `each` applies a call to every generator of the stream, `next` returns its next block.
  auto drive = [&](const std::function<void(const std::function<void(StreamGenerator&)>&)>& each,
                   const std::function<at::Tensor()>& next) {
    std::vector<at::Tensor> out;
    each([&](StreamGenerator& g) { g.start(prompt, 3); });
    for (int i = 0; i < blocks; ++i) {
      if (i == 0) each([&](StreamGenerator& g) { g.set_vace(VaceInput{context, 0.8}); });
      if (i == 1) each([&](StreamGenerator& g) { g.set_v2v(V2vInput{v2v_latents, 0.7}); });
      if (i == 2) each([&](StreamGenerator& g) { g.set_vace(std::nullopt); });
      out.push_back(next());
    }
    return out;
  };
  // Each rank computes its rows of the hints (its queries against every rank's VACE K/V): with
  // hints every step and with step 1's reused, on an even and an uneven split.
  for (const bool hint_reuse : {false, true}) {
    GeneratorOptions options = fixture_options;
    options.vace_hint_reuse = hint_reuse;
    StreamGenerator one(weights, options, nullptr, &module);
    ASSERT_TRUE(one.vace_available());
    const auto expected =
        drive([&](const auto& call) { call(one); }, [&] { return one.next_block(); });
    for (const int ranks : {2, 3}) {
      auto p = ParallelStream::create(std::vector<const StreamGenerator*>(ranks, &one),
                                      RankBackend::gloo);
      const auto actual =
          drive([&](const auto& call) { p->each([&](StreamGenerator& g, int) { call(g); }); },
                [&] { return p->next_block(); });
      ASSERT_EQ(actual.size(), expected.size());
      for (size_t b = 0; b < expected.size(); ++b)
        EXPECT_LT(max_abs_diff(actual[b], expected[b]), 1e-5)
            << fmt::format("{} ranks, hint reuse {}, block {}", ranks, hint_reuse, b);
    }
  }
}

TEST(SequenceParallel, RejectsGeneratorsThatAreNotItsRanks) {
  const Stream s;
  std::vector<std::unique_ptr<StreamGenerator>> plain;
  plain.push_back(std::make_unique<StreamGenerator>(s.weights, s.options));
  EXPECT_THROW(ParallelStream(std::move(plain)), Error);
  EXPECT_THROW(ParallelStream::create({}, RankBackend::gloo), ConfigError);
  EXPECT_THROW(parse_rank_backend("mpi"), ConfigError);
}

}  // namespace
}  // namespace longlive::test
