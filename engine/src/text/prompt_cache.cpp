#include <algorithm>

#include "longlive/log.h"
#include "longlive/text_encoder.h"

namespace longlive {

PromptCache::PromptCache(Encode encode, size_t max_bytes, size_t max_entries)
    : encode_(std::move(encode)),
      max_bytes_(max_bytes),
      max_entries_(std::max<size_t>(max_entries, 1)),
      worker_([this] { worker_loop(); }) {}

PromptCache::~PromptCache() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  worker_.join();
}

void PromptCache::insert_locked(const std::string& key, const at::Tensor& value) {
  if (index_.count(key)) return;
  const size_t size = static_cast<size_t>(value.numel()) * value.element_size();
  lru_.emplace_front(key, value);
  index_[key] = lru_.begin();
  bytes_ += size;
  // Keep at least the newest entry even when it alone exceeds the budget.
  while ((bytes_ > max_bytes_ || lru_.size() > max_entries_) && lru_.size() > 1) {
    auto& [old_key, old_value] = lru_.back();
    bytes_ -= static_cast<size_t>(old_value.numel()) * old_value.element_size();
    index_.erase(old_key);
    lru_.pop_back();
    ++stats_.evictions;
  }
}

at::Tensor PromptCache::get(std::string_view prompt) {
  const std::string key = Tokenizer::clean(prompt);
  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.hits;
      return it->second->second;
    }
  }
  // Waits for a prefetch the encoder is running now: its result is a hit (the prompt was encoded
  // ahead, the caller only waited for the rest of that encode). A prefetch still queued is
  // dropped and the prompt encoded here: a miss.
  std::lock_guard encode_lock(encode_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      ++stats_.hits;
      return it->second->second;
    }
    ++stats_.misses;
    queue_.erase(std::remove(queue_.begin(), queue_.end(), key), queue_.end());
  }
  const at::Tensor value = encode_(key);
  std::lock_guard lock(mutex_);
  insert_locked(key, value);
  return value;
}

void PromptCache::prefetch(std::string_view prompt) {
  const std::string key = Tokenizer::clean(prompt);
  if (key.empty()) return;
  {
    std::lock_guard lock(mutex_);
    if (index_.count(key) || std::find(queue_.begin(), queue_.end(), key) != queue_.end()) return;
    queue_.push_back(key);
  }
  work_ready_.notify_one();
}

bool PromptCache::contains(std::string_view prompt) const {
  std::lock_guard lock(mutex_);
  return index_.count(Tokenizer::clean(prompt)) != 0;
}

PromptCache::Stats PromptCache::stats() const {
  std::lock_guard lock(mutex_);
  Stats s = stats_;
  s.entries = static_cast<int64_t>(lru_.size());
  s.bytes = static_cast<int64_t>(bytes_);
  return s;
}

void PromptCache::worker_loop() {
  for (;;) {
    std::string key;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      key = queue_.front();
      queue_.pop_front();
      if (index_.count(key)) continue;
    }
    try {
      // Check, encode and insert under the encoder lock, so get() never encodes it twice.
      std::lock_guard encode_lock(encode_mutex_);
      {
        std::lock_guard lock(mutex_);
        if (index_.count(key)) continue;
      }
      const at::Tensor value = encode_(key);
      std::lock_guard lock(mutex_);
      insert_locked(key, value);
    } catch (const std::exception& e) {
      // A bad prompt must not kill the worker; get() will report the error to the caller.
      log::warn("prefetch of a prompt failed: {}", e.what());
    }
  }
}

void PromptCache::while_not_encoding(const std::function<void()>& change) {
  std::lock_guard encode_lock(encode_mutex_);
  change();
}

}  // namespace longlive
