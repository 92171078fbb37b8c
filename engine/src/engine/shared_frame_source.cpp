// SharedFrameSource: one live input's reads handed to every reader, in order (vace.h).
#include <ATen/ATen.h>

#include <algorithm>

#include "longlive/error.h"
#include "longlive/vace.h"

namespace longlive {

class SharedFrameSource::Reader final : public VaceFrameSource {
 public:
  Reader(std::shared_ptr<SharedFrameSource> shared, int64_t next)
      : shared_(std::move(shared)), next_(next) {}
  ~Reader() override {
    const std::lock_guard lock(shared_->mutex_);
    auto& readers = shared_->readers_;
    readers.erase(std::remove(readers.begin(), readers.end(), this), readers.end());
    shared_->drop_taken();
  }
  at::Tensor next_frames(int64_t count) override { return shared_->read(*this, count, false); }
  at::Tensor first_frames(int64_t count) override { return shared_->read(*this, count, true); }
  bool has_frames(int64_t count) const override { return shared_->has_frames(*this, count); }
  Counts counts() const override { return shared_->source_->counts(); }

 private:
  friend class SharedFrameSource;
  std::shared_ptr<SharedFrameSource> shared_;
  int64_t next_;  // the index of the next shared read this reader takes
};

SharedFrameSource::SharedFrameSource(std::shared_ptr<VaceFrameSource> source)
    : source_(std::move(source)) {
  if (!source_) throw Error("SharedFrameSource: no source");
}

std::shared_ptr<VaceFrameSource> SharedFrameSource::reader() {
  const std::lock_guard lock(mutex_);
  auto r = std::make_shared<Reader>(shared_from_this(),
                                    first_read_ + static_cast<int64_t>(reads_.size()));
  readers_.push_back(r.get());
  return r;
}

at::Tensor SharedFrameSource::read(Reader& reader, int64_t count, bool first) {
  {
    const std::lock_guard lock(mutex_);
    const int64_t at = reader.next_ - first_read_;
    if (at < static_cast<int64_t>(reads_.size())) {
      const at::Tensor frames = reads_[static_cast<size_t>(at)];
      ++reader.next_;
      drop_taken();
      // The newest `count` of a shared read (an input's first block takes 9 of a block's 12).
      if (frames.size(0) >= count) return frames.narrow(0, frames.size(0) - count, count);
      // More than the shared read holds: this reader's own read, below.
    } else {
      ++reader.next_;
    }
  }
  // The source is read without the lock (a paced camera waits for its frames): the inputs read
  // on one thread, in turn, so no other reader asks meanwhile. Appended for the readers behind.
  at::Tensor frames = first ? source_->first_frames(count) : source_->next_frames(count);
  const std::lock_guard lock(mutex_);
  if (reader.next_ - 1 == first_read_ + static_cast<int64_t>(reads_.size())) {
    reads_.push_back(frames);
    drop_taken();
  }
  return frames;
}

bool SharedFrameSource::has_frames(const Reader& reader, int64_t count) const {
  {
    const std::lock_guard lock(mutex_);
    const int64_t at = reader.next_ - first_read_;
    if (at < static_cast<int64_t>(reads_.size()) &&
        reads_[static_cast<size_t>(at)].size(0) >= count)
      return true;
  }
  return source_->has_frames(count);
}

void SharedFrameSource::drop_taken() {
  int64_t oldest = first_read_ + static_cast<int64_t>(reads_.size());
  for (const Reader* r : readers_) oldest = std::min(oldest, r->next_);
  while (first_read_ < oldest && !reads_.empty()) {
    reads_.pop_front();
    ++first_read_;
  }
}

}  // namespace longlive
