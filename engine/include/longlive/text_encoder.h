#pragma once
// Text conditioning: umT5 encoder, tokenizer and an LRU cache of prompt embeddings.
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "longlive/weights.h"

namespace longlive {

struct UMT5Config {
  int64_t vocab = 256384;
  int64_t dim = 4096;
  int64_t dim_attn = 4096;
  int64_t dim_ffn = 10240;
  int64_t num_heads = 64;
  int64_t num_layers = 24;
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  double eps = 1e-6;

  static UMT5Config umt5_xxl() { return UMT5Config{}; }
  // A 2-layer encoder of width `dim` (the fixtures' tiny size): test mode and CPU benches.
  static UMT5Config tiny(int64_t dim = 64) {
    return UMT5Config{
        .vocab = 256, .dim = dim, .dim_attn = dim, .dim_ffn = 128, .num_heads = 4, .num_layers = 2};
  }
  // Sizes from the tensor shapes (heads from the relative-position table).
  static UMT5Config infer(const WeightStore& weights);
};

// Random weights under the original umT5 names (tests, the studio's test mode, benchmarks).
WeightStore make_random_umt5_weights(const UMT5Config& config, uint64_t seed,
                                     at::ScalarType dtype = at::kFloat,
                                     at::Device device = at::kCPU);

// The umT5 encoder (gated-GELU FFN, T5 RMS norms, unscaled attention, per-layer bucketed
// relative position bias, padding mask).
class UMT5Encoder {
 public:
  UMT5Encoder(const WeightStore& weights, const UMT5Config& config, at::Device device,
              at::ScalarType dtype);
  const UMT5Config& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  // Converts the weights in place to another device and matrix dtype (a preset change of
  // text_encoder_device): no file is read. From bf16 to float32 and back is exact for the
  // public checkpoint, which is stored in bf16.
  void move_to(at::Device device, at::ScalarType dtype);

  // ids, mask: [B, L] int64. Returns the encoder output on every position: [B, L, dim] float32.
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask) const;

  // Bucket of (key - query) for an L x L attention, and layer `layer`'s additive bias [1, H, L, L].
  at::Tensor relative_buckets(int64_t length) const;
  at::Tensor position_bias(int64_t layer, int64_t length) const;

 private:
  struct Layer {
    at::Tensor norm1, q, k, v, o, norm2, gate, fc1, fc2, pos;
  };
  UMT5Config config_;
  at::Device device_;
  at::ScalarType dtype_;
  at::Tensor embedding_, final_norm_;
  std::vector<Layer> layers_;
};

struct Tokens {
  at::Tensor ids;   // [1, text_len] int64, padded with 0
  at::Tensor mask;  // [1, text_len] int64, 1 on real tokens (EOS included)
  int64_t valid_length = 0;
  int64_t dropped = 0;  // tokens cut by truncation
};

// Tokenizer with the reference pipeline's conventions: "whitespace" cleaning, EOS (id 1)
// appended, pad id 0, padded/truncated to text_len.
class Tokenizer {
 public:
  // umT5's spiece.model (Wan2.1-T2V-1.3B/google/umt5-xxl/spiece.model).
  static Tokenizer from_sentencepiece(const std::filesystem::path& model, int64_t text_len = 512);
  // Test-only tokenizer for the studio's tiny random model, where no spiece.model exists: UTF-8
  // bytes + 2 mapped into [2, vocab).
  static Tokenizer byte_fallback(int64_t vocab, int64_t text_len);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // ConfigError for empty or whitespace-only prompts; logs a warning when truncating.
  Tokens encode(std::string_view text) const;
  int64_t text_len() const { return text_len_; }

  // HTML-unescape (twice), collapse whitespace runs to one space, trim. (The reference also runs
  // ftfy.fix_text, which repairs mojibake; that is not reproduced.)
  static std::string clean(std::string_view text);

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t text_len_ = 512;
};

struct TextEncoderOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
};

// Tokenizer + encoder: prompt text to the embeddings the DiT consumes, [1, text_len, dim] with
// positions at/after the valid length zeroed, float32 on the encoder's device.
class TextEncoder {
 public:
  TextEncoder(Tokenizer tokenizer, std::unique_ptr<UMT5Encoder> encoder);
  static std::unique_ptr<TextEncoder> open(const std::filesystem::path& weights,
                                           const std::filesystem::path& spiece_model,
                                           const TextEncoderOptions& options);
  at::Tensor encode(std::string_view prompt) const;
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const UMT5Encoder& encoder() const { return *encoder_; }
  TextEncoderOptions options() const { return {encoder_->device(), encoder_->dtype()}; }
  // See UMT5Encoder::move_to. Not concurrent with encode(): a PromptCache's encoder is moved
  // inside PromptCache::while_not_encoding.
  void move_to(const TextEncoderOptions& options) {
    encoder_->move_to(options.device, options.dtype);
  }

 private:
  Tokenizer tokenizer_;
  std::unique_ptr<UMT5Encoder> encoder_;
};

// LRU of prompt embeddings keyed by cleaned text, bounded in bytes and in entries, thread-safe.
// prefetch() encodes on a background thread so a switch on Enter only swaps embeddings.
class PromptCache {
 public:
  using Encode = std::function<at::Tensor(const std::string&)>;
  struct Stats {
    int64_t hits = 0, misses = 0, entries = 0, bytes = 0, evictions = 0;
  };

  // The entry bound: 256 MiB holds 64 of Wan's [1, 512, 4096] bf16 embeddings, a performer's
  // setlist and blends; smaller embeddings (the tiny model's, a few KiB) would otherwise fill it
  // only after tens of thousands of prompts, each kept with its text (an hour-long soak with a
  // new prompt every 8 blocks grew ~0.5 KiB a block that way).
  static constexpr size_t kDefaultMaxEntries = 64;
  PromptCache(Encode encode, size_t max_bytes, size_t max_entries = kDefaultMaxEntries);
  ~PromptCache();
  PromptCache(const PromptCache&) = delete;
  PromptCache& operator=(const PromptCache&) = delete;

  // Embeddings of the prompt: from the cache, else encoded now (and cached).
  at::Tensor get(std::string_view prompt);
  // Queues the prompt for encoding in the background (no-op when cached or queued).
  void prefetch(std::string_view prompt);
  bool contains(std::string_view prompt) const;
  Stats stats() const;
  // Runs `change` while no encode runs (waits for a running prefetch): for changing the encoder
  // behind `encode` (moving it to another device), which the cache's entries outlive.
  void while_not_encoding(const std::function<void()>& change);

 private:
  void insert_locked(const std::string& key, const at::Tensor& value);
  void worker_loop();

  Encode encode_;
  size_t max_bytes_;
  size_t max_entries_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::list<std::pair<std::string, at::Tensor>> lru_;  // front = most recent
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  std::deque<std::string> queue_;
  size_t bytes_ = 0;
  Stats stats_;
  bool stopping_ = false;
  std::mutex encode_mutex_;  // one encode at a time (the encoder is not re-entrant on one device)
  std::thread worker_;
};

}  // namespace longlive
