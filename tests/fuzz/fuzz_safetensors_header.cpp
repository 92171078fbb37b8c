// libFuzzer: the safetensors header parser must either accept a header whose every entry lies
// inside the file, or throw one of our errors. Anything else (a crash, a sanitizer report, a
// foreign exception escaping) is a bug.
#include <cstdint>
#include <cstdlib>

#include "io/safetensors.h"
#include "longlive/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = longlive::io::parse_safetensors_header(data, size, "fuzz.safetensors");
    if (header.data_offset > size) std::abort();
    const uint64_t data_bytes = size - header.data_offset;
    for (const auto& e : header.entries) {
      if (e.begin > e.end || e.end > data_bytes) std::abort();
    }
  } catch (const longlive::Error&) {
  }
  return 0;
}
