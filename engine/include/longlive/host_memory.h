#pragma once
// Process-wide host allocator settings for long sessions.

namespace longlive {

// LibTorch's CPU tensors come from malloc. glibc raises its mmap threshold each time a large
// block is freed, so after a few blocks every tensor buffer lands on the heap instead, and the
// heap's fragmentation grows RSS block after block (the soak measured ~1 MiB per block on the
// tiny CPU model; docs/reliability.md). A fixed threshold keeps large buffers in their own
// mappings, returned to the system when freed. Call once at the start of main(); a no-op where
// mallopt does not exist.
void keep_large_host_buffers_out_of_the_heap();

}  // namespace longlive
