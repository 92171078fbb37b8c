// libFuzzer: a .pt/.pth checkpoint from the internet goes through the reader the app uses
// (LibTorch's zip reader and its C++ unpickler, which resolves only a fixed set of torch globals
// and has no Python to run code with). It must throw one of our errors or return tensors that
// can be read in full. Two shapes of input:
//  - starts with "PK": the whole file (malformed zips, truncated records, bad offsets);
//  - anything else: the bytes become data.pkl of a well-formed archive that also holds storages
//    "0" and "1" (pickle opcodes out of the allowed set, unknown globals, huge sizes/strides),
//    since LibTorch is not instrumented and raw zips alone would rarely reach the unpickler.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "io/torch_checkpoint.h"
#include "longlive/error.h"
#include "longlive/weights.h"

namespace {

std::vector<char> wrap_pickle(const uint8_t* data, size_t size) {
  std::vector<char> out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
    const auto* p = static_cast<const char*>(buf);
    out.insert(out.end(), p, p + n);
    return n;
  });
  writer.writeRecord("data.pkl", data, size);
  std::vector<uint8_t> storage(256);
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<uint8_t>(i);
  writer.writeRecord("data/0", storage.data(), storage.size());
  writer.writeRecord("data/1", storage.data(), 4);
  const char version[] = "3\n";
  writer.writeRecord(".data/version", version, std::strlen(version));
  writer.writeEndOfFile();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Triage: LONGLIVE_FUZZ_VERBOSE=1 fuzz_torch_checkpoint FILE... says what each input gave.
  static const bool verbose = std::getenv("LONGLIVE_FUZZ_VERBOSE") != nullptr;
  const bool whole_file = size >= 2 && data[0] == 'P' && data[1] == 'K';
  const std::vector<char> bytes =
      whole_file ? std::vector<char>(data, data + size) : wrap_pickle(data, size);
  try {
    const longlive::WeightStore store =
        longlive::io::read_torch_checkpoint(bytes, "fuzz.pt", /*dict_key=*/{});
    for (const auto& name : store.names()) {
      const at::Tensor& t = store.get(name);
      // Every element must lie inside the tensor's storage (checked by hand: LibTorch's kernels
      // are not instrumented, ASan would not see them read past it), then reading it all works.
      if (!t.defined()) std::abort();
      if (t.numel() > 0) {
        int64_t last = t.storage_offset();
        for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
        if (last < 0 || static_cast<uint64_t>(last) >= t.storage().nbytes() / t.element_size())
          std::abort();
        if (t.numel() < (int64_t{1} << 24)) (void)t.contiguous().clone();
      }
    }
    if (verbose) std::fprintf(stderr, "loaded %zu tensors\n", store.size());
  } catch (const longlive::Error& e) {
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
  return 0;
}
