#include "longlive/engine.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace longlive {

void keep_large_host_buffers_out_of_the_heap() {
#if defined(__GLIBC__)
  // Setting it also turns glibc's dynamic threshold off. 64 KiB: the value the soak measured
  // flat with (MALLOC_MMAP_THRESHOLD_=65536).
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
}

}  // namespace longlive
