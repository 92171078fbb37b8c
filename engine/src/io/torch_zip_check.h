#pragma once
// Checks a PyTorch zip checkpoint before LibTorch's reader sees it. LibTorch's unpickler has no
// Python and runs no code, but it trusts sizes: a 200-byte file could make it reserve gigabytes
// (a string length, a memo index, a record size). This pass walks the zip directory and data.pkl
// once, without allocating from the file's numbers, and rejects what a checkpoint written by
// torch.save never holds.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace longlive::io {

// The records of a checked archive (views into the caller's bytes, which must outlive it).
struct TorchZip {
  // data.pkl as LibTorch's unpickler must read it. That unpickler turns every
  // collections.OrderedDict into None (it expects one only as a tensor's empty backward hooks),
  // so a state_dict() -- every public checkpoint -- would not load: each `OrderedDict()` here is
  // an empty dict instead, BUILD and the state it would set (a state dict's `_metadata`) are
  // left out, and so are FRAME hints (their lengths no longer hold).
  std::string libtorch_pickle;
  std::map<std::string, std::string_view> records;  // "data/0" -> bytes, without the archive folder
  uint64_t version = 0;                             // the "version" record; 0 when absent
};

// FormatError naming `origin` and the problem when:
//  - the zip is malformed: no end-of-directory record, entries or data outside the file, a
//    compression other than stored/deflate, a deflated entry larger than deflate can expand to;
//  - there is no data.pkl, or it is compressed (torch.save stores it);
//  - data.pkl uses an opcode outside the set torch.save writes (INST, OBJ, NEWOBJ, EXT*,
//    STACK_GLOBAL, out-of-band buffers, text persistent ids), asks for a global other than
//    torch's tensor/storage rebuilders and collections.OrderedDict (e.g. os.system), has an
//    argument longer than what is left of it, a memo index out of sequence, or no STOP.
// Only stored (uncompressed) records are returned; a deflated record is refused when read.
TorchZip check_torch_zip(const char* bytes, size_t size, const std::string& origin);

}  // namespace longlive::io
