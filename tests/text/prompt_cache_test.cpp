// PromptCache: hits skip the encoder, eviction by bytes, prefetch from another thread.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "longlive/text_encoder.h"

namespace longlive::test {
namespace {

struct CountingEncoder {
  std::atomic<int> calls{0};
  at::Tensor operator()(const std::string& text) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return at::full({1, 4, 8}, static_cast<double>(std::hash<std::string>{}(text) % 1000));
  }
};

constexpr size_t kEntryBytes = 4 * 8 * sizeof(float);

TEST(PromptCache, HitReturnsTheSameTensorWithoutEncoding) {
  CountingEncoder enc;
  PromptCache cache([&](const std::string& t) { return enc(t); }, 10 * kEntryBytes);
  const at::Tensor a = cache.get("a red fox");
  const at::Tensor b = cache.get("  a red   fox ");  // same after cleaning
  EXPECT_EQ(enc.calls.load(), 1);
  EXPECT_TRUE(a.is_same(b));
  const auto s = cache.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.bytes, static_cast<int64_t>(kEntryBytes));
}

TEST(PromptCache, EvictsLeastRecentlyUsedByBytes) {
  CountingEncoder enc;
  PromptCache cache([&](const std::string& t) { return enc(t); }, 2 * kEntryBytes);
  cache.get("one");
  cache.get("two");
  cache.get("one");    // "two" is now the oldest
  cache.get("three");  // evicts "two"
  EXPECT_TRUE(cache.contains("one"));
  EXPECT_FALSE(cache.contains("two"));
  EXPECT_TRUE(cache.contains("three"));
  EXPECT_EQ(cache.stats().evictions, 1);
  EXPECT_LE(cache.stats().bytes, static_cast<int64_t>(2 * kEntryBytes));
}

TEST(PromptCache, EvictsLeastRecentlyUsedByEntries) {
  CountingEncoder enc;
  // Room for a thousand embeddings, but three entries.
  PromptCache cache([&](const std::string& t) { return enc(t); }, 1000 * kEntryBytes, 3);
  for (const char* p : {"one", "two", "three"}) cache.get(p);
  cache.get("one");   // "two" is now the oldest
  cache.get("four");  // evicts "two"
  EXPECT_TRUE(cache.contains("one"));
  EXPECT_FALSE(cache.contains("two"));
  EXPECT_TRUE(cache.contains("three"));
  EXPECT_TRUE(cache.contains("four"));
  for (int i = 0; i < 100; ++i) cache.get("new prompt " + std::to_string(i));
  const auto s = cache.stats();
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.bytes, static_cast<int64_t>(3 * kEntryBytes));
  EXPECT_EQ(s.evictions, 101);
  // The default bound holds a setlist.
  PromptCache defaults([&](const std::string& t) { return enc(t); }, 1000 * kEntryBytes);
  for (int i = 0; i < 100; ++i) defaults.get("prompt " + std::to_string(i));
  EXPECT_EQ(defaults.stats().entries, static_cast<int64_t>(PromptCache::kDefaultMaxEntries));
  EXPECT_TRUE(defaults.contains("prompt 99"));
  EXPECT_FALSE(defaults.contains("prompt 0"));
}

TEST(PromptCache, PrefetchFillsTheCacheInTheBackground) {
  CountingEncoder enc;
  PromptCache cache([&](const std::string& t) { return enc(t); }, 100 * kEntryBytes);
  cache.prefetch("storm over the sea");
  for (int i = 0; i < 500 && !cache.contains("storm over the sea"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(cache.contains("storm over the sea"));
  cache.get("storm over the sea");
  EXPECT_EQ(enc.calls.load(), 1);
  EXPECT_EQ(cache.stats().hits, 1);
}

TEST(PromptCache, ConcurrentPrefetchAndGetEncodeEachPromptOnce) {
  CountingEncoder enc;
  PromptCache cache([&](const std::string& t) { return enc(t); }, 1000 * kEntryBytes);
  std::vector<std::string> prompts;
  for (int i = 0; i < 40; ++i) prompts.push_back("prompt " + std::to_string(i));
  std::thread prefetcher([&] {
    for (const auto& p : prompts) cache.prefetch(p);
  });
  std::thread getter([&] {
    for (auto it = prompts.rbegin(); it != prompts.rend(); ++it) {
      const at::Tensor e = cache.get(*it);
      EXPECT_EQ(e.size(1), 4);
    }
  });
  prefetcher.join();
  getter.join();
  for (const auto& p : prompts) EXPECT_TRUE(cache.get(p).defined());
  EXPECT_EQ(enc.calls.load(), 40);  // never twice for one prompt
}

// Enter right after typing stopped: the prefetch is still encoding. get() waits for it instead of
// encoding again, and counts a hit (the prompt was encoded ahead).
TEST(PromptCache, GetDuringARunningPrefetchWaitsForItAndCountsAHit) {
  std::atomic<bool> entered{false}, release{false};
  std::atomic<int> calls{0};
  PromptCache cache(
      [&](const std::string&) {
        ++calls;
        entered = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return at::ones({1, 4, 8});
      },
      100 * kEntryBytes);
  cache.prefetch("slow prompt");
  while (!entered) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::atomic<bool> got{false};
  std::thread getter([&] {
    cache.get("slow prompt");
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(got.load()) << "get() must wait for the running prefetch";
  release = true;
  getter.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(cache.stats().hits, 1);
  EXPECT_EQ(cache.stats().misses, 0);
}

// Moving the encoder (a preset change of text_encoder_device) waits for a running prefetch: the
// encoder is never changed under an encode.
TEST(PromptCache, WhileNotEncodingWaitsForARunningPrefetch) {
  std::atomic<bool> entered{false}, release{false}, encoding{false};
  PromptCache cache(
      [&](const std::string&) {
        encoding = true;
        entered = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        encoding = false;
        return at::ones({1, 4, 8});
      },
      100 * kEntryBytes);
  cache.prefetch("slow prompt");
  while (!entered) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::atomic<bool> changed{false}, encoding_during_change{true};
  std::thread mover([&] {
    cache.while_not_encoding([&] { encoding_during_change = encoding.load(); });
    changed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(changed.load()) << "the change must wait for the running encode";
  release = true;
  mover.join();
  EXPECT_TRUE(changed.load());
  EXPECT_FALSE(encoding_during_change.load());
  EXPECT_TRUE(cache.contains("slow prompt"));
}

}  // namespace
}  // namespace longlive::test
