// libFuzzer: a whole safetensors file (header and data section) goes through the loader the app
// uses (memory-mapped SafetensorsFile), then every tensor is read byte for byte. The loader must
// throw one of our errors or return tensors that lie inside the file and match their header entry.
#include <sys/mman.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/safetensors.h"
#include "longlive/error.h"

namespace {

// An anonymous in-memory file, so each input is read through the real open + mmap path.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(::memfd_create("fuzz.safetensors", 0)) {
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const MemFile file(data, size);
  try {
    const auto st = longlive::io::SafetensorsFile::open(file.path());
    const auto& header = st.header();
    if (header.data_offset > size) std::abort();
    for (const auto& entry : header.entries) {
      const at::Tensor t = st.tensor(entry);
      if (t.scalar_type() != entry.scalar_type) std::abort();
      if (!t.sizes().equals(entry.shape)) std::abort();
      const auto bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (bytes != entry.end - entry.begin) std::abort();
      // Read every byte (a copy, as the model loader's dtype conversion does) and compare it with
      // the input at the offset the header names: catches views of the wrong range.
      const at::Tensor copy = t.contiguous().clone();
      if (bytes > 0 &&
          std::memcmp(copy.data_ptr(), data + header.data_offset + entry.begin, bytes) != 0)
        std::abort();
    }
  } catch (const longlive::Error&) {
  }
  return 0;
}
