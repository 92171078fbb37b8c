#pragma once
// One read-only mmap of a whole file, shared by the zero-copy tensors that view it (safetensors
// and PyTorch zip checkpoints): pages come from the page cache as they are read, nothing is
// copied or zeroed first.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "longlive/error.h"

namespace longlive::io {

class MappedFile {
 public:
  // `copy_on_write`: the pages may be written, each written page becoming the process's own
  // copy (the file never changes); otherwise writing is a segmentation fault.
  explicit MappedFile(const std::filesystem::path& path, bool copy_on_write = false) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw IoError(fmt::format("cannot open '{}': {}", path.string(), std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw IoError(fmt::format("cannot stat '{}': {}", path.string(), std::strerror(errno)));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      const int protection = copy_on_write ? PROT_READ | PROT_WRITE : PROT_READ;
      void* p = ::mmap(nullptr, size_, protection, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw IoError(fmt::format("cannot map '{}': {}", path.string(), std::strerror(errno)));
      }
      data_ = static_cast<uint8_t*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace longlive::io
