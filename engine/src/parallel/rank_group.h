#pragma once
// Ranks of one stream split across devices (sequence parallelism, docs/multi-gpu.md): each rank
// computes its slice of a block's token rows and the ranks exchange what crosses rows (the
// block's K/V, the output) through c10d collectives. Ranks are threads of one process, so the
// engine's commands reach every rank through memory; only tensors travel through c10d.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "longlive/generator.h"  // RankBackend

namespace longlive {

// The contiguous token rows [begin, begin + count) a rank computes: rows split as evenly as
// possible, the first `rows % ranks` ranks taking one more.
struct RowShard {
  int64_t begin = 0;
  int64_t count = 0;
  static RowShard of(int64_t rows, int rank, int ranks);
};

class RankGroup {
 public:
  virtual ~RankGroup() = default;
  // `ranks` connected groups, element r for rank r, each to be used from one thread only.
  // Throws ConfigError when the backend is unavailable or ranks < 1.
  static std::vector<std::shared_ptr<RankGroup>> create_local(int ranks, RankBackend backend);

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank's rows along dim `dim` in rank order, for rows split by RowShard::of(total, ...):
  // `local` holds this rank's rows; the result has `total` rows. Called by every rank in turn.
  virtual at::Tensor all_gather_rows(const at::Tensor& local, int64_t dim, int64_t total) = 0;
  RowShard shard(int64_t rows) const { return RowShard::of(rows, rank(), size()); }
  // Bytes this rank has received from the others so far.
  virtual int64_t bytes_received() const = 0;
};

}  // namespace longlive
