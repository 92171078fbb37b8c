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
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override {
    shared_->read_in_parts(*this, count, part, part_read);
  }
  bool has_frames(int64_t count) const override { return shared_->has_frames(*this, count); }
  bool filmed() const override { return shared_->source_->filmed(); }
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

at::Tensor SharedFrameSource::take_shared(Reader& reader, int64_t count) {
  const std::lock_guard lock(mutex_);
  const int64_t at = reader.next_ - first_read_;
  ++reader.next_;
  if (at >= static_cast<int64_t>(reads_.size())) return {};
  const at::Tensor frames = reads_[static_cast<size_t>(at)];
  drop_taken();
  // The newest `count` of a shared read (an input's first block takes 9 of a block's 12).
  if (frames.defined() && frames.size(0) >= count)
    return frames.narrow(0, frames.size(0) - count, count);
  return {};  // more than the shared read holds: this reader's own read
}

void SharedFrameSource::keep_read(const Reader& reader, const std::vector<at::Tensor>& parts) {
  const std::lock_guard lock(mutex_);
  if (reader.next_ - 1 != first_read_ + static_cast<int64_t>(reads_.size())) return;
  // A read no other reader will take is dropped at once: no whole copy of its parts for it.
  const bool others = readers_.size() > 1;
  reads_.push_back(!others ? at::Tensor() : parts.size() == 1 ? parts[0] : at::cat(parts));
  drop_taken();
}

at::Tensor SharedFrameSource::read(Reader& reader, int64_t count, bool first) {
  if (at::Tensor shared = take_shared(reader, count); shared.defined()) return shared;
  // The source is read without the lock (a paced camera waits for its frames): the inputs read
  // on one thread, in turn, so no other reader asks meanwhile. Kept for the readers behind.
  at::Tensor frames = first ? source_->first_frames(count) : source_->next_frames(count);
  keep_read(reader, {frames});
  return frames;
}

void SharedFrameSource::read_in_parts(Reader& reader, int64_t count, int64_t part,
                                      const std::function<void(const at::Tensor&)>& part_read) {
  if (const at::Tensor shared = take_shared(reader, count); shared.defined()) {
    VaceFrameSource::hand_out_in_parts(shared, part, part_read);
    return;
  }
  std::vector<at::Tensor> parts;
  source_->next_frames_in_parts(count, part, [&](const at::Tensor& frames) {
    parts.push_back(frames);
    part_read(frames);
  });
  keep_read(reader, parts);
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
