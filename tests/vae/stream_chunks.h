#pragma once
// The streamed chunks of a decoder fixture (wanvae_io / taehv_io): the reference decoded its
// latents chunk by chunk and recorded each chunk's frame range (`stream_chunk_frame_ranges`);
// the chunks need not be equal (5 latents in chunks of 2, 2 and 1 give [0,5), [5,13), [13,17)).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "longlive/decoder.h"

namespace longlive::test {

// Latent frames of each chunk: the count whose frames_for() is the range's frame count (the first
// chunk of a video yields fewer frames than the later ones). Fails the test when a range matches no
// count, the ranges leave gaps, or the chunks do not add up to `latent_frames`.
inline std::vector<int64_t> stream_chunk_sizes(const nlohmann::json& ranges,
                                               const StreamingDecoder& decoder,
                                               int64_t latent_frames) {
  std::vector<int64_t> sizes;
  int64_t next_frame = 0, total = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const int64_t begin = ranges[i].at(0).get<int64_t>(), end = ranges[i].at(1).get<int64_t>();
    EXPECT_EQ(begin, next_frame) << "chunk " << i << " does not start where chunk " << i - 1
                                 << " ended";
    next_frame = end;
    int64_t n = 1;
    while (n <= latent_frames && decoder.frames_for(n, i == 0) != end - begin) ++n;
    if (n > latent_frames) {
      ADD_FAILURE() << "chunk " << i << " [" << begin << ", " << end
                    << ") matches no latent frame count";
      return {};
    }
    sizes.push_back(n);
    total += n;
  }
  EXPECT_EQ(total, latent_frames) << "the chunks do not cover the latents";
  return sizes;
}

}  // namespace longlive::test
