#include "io/torch_zip_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "longlive/error.h"

namespace longlive::io {
namespace {

// Little-endian field reads; the caller checks the range first.
uint64_t le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kZip64EndLocator = 0x07064b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t k32Bit = 0xFFFFFFFF;

struct Entry {
  std::string name;
  uint16_t method = 0;
  uint64_t compressed = 0, size = 0, local_offset = 0;
  uint64_t data_offset = 0;  // after the local header
};

class ZipCheck {
 public:
  ZipCheck(const char* bytes, size_t size, const std::string& origin)
      : p_(bytes), n_(size), origin_(origin) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint: {}", origin_, what));
  }

  bool fits(uint64_t offset, uint64_t length) const {
    return offset <= n_ && length <= n_ - offset;
  }

  std::vector<Entry> entries_;

  std::optional<Entry> find_data_pkl() {
    // The end-of-directory record is in the last 22 + 65535 (comment) bytes.
    if (n_ < 22) fail("too short for a zip archive");
    std::optional<uint64_t> eocd;
    const uint64_t lowest = n_ >= 22 + 65535 ? n_ - 22 - 65535 : 0;
    for (uint64_t at = n_ - 22 + 1; at-- > lowest;) {
      if (le(p_ + at, 4) == kEndOfDirectory) {
        eocd = at;
        break;
      }
    }
    if (!eocd) fail("no zip end-of-directory record (truncated download?)");
    uint64_t entries = le(p_ + *eocd + 10, 2);
    uint64_t dir_size = le(p_ + *eocd + 12, 4);
    uint64_t dir_offset = le(p_ + *eocd + 16, 4);
    uint64_t dir_end_limit = *eocd;
    if (entries == 0xFFFF || dir_size == k32Bit || dir_offset == k32Bit) {
      // Zip64 (files over 4 GiB): the locator sits right before the end-of-directory record.
      if (*eocd < 20 || le(p_ + *eocd - 20, 4) != kZip64EndLocator)
        fail("zip64 sizes without a zip64 locator");
      const uint64_t record = le(p_ + *eocd - 20 + 8, 8);
      if (!fits(record, 56) || record + 56 > *eocd - 20 || le(p_ + record, 4) != kZip64End)
        fail(fmt::format("zip64 end record at offset {} is outside the file or damaged", record));
      entries = le(p_ + record + 32, 8);
      dir_size = le(p_ + record + 40, 8);
      dir_offset = le(p_ + record + 48, 8);
      dir_end_limit = record;
    }
    if (!fits(dir_offset, dir_size) || dir_offset + dir_size > dir_end_limit)
      fail(fmt::format("zip directory [{}, +{}) lies outside the file", dir_offset, dir_size));
    if (entries > dir_size / 46) fail(fmt::format("zip directory claims {} entries", entries));

    std::optional<Entry> data_pkl;
    uint64_t at = dir_offset;
    for (uint64_t i = 0; i < entries; ++i) {
      if (at + 46 > dir_offset + dir_size || le(p_ + at, 4) != kDirectoryEntry)
        fail(fmt::format("zip directory entry {} is damaged", i));
      Entry e;
      e.method = static_cast<uint16_t>(le(p_ + at + 10, 2));
      e.compressed = le(p_ + at + 20, 4);
      e.size = le(p_ + at + 24, 4);
      const uint64_t name_len = le(p_ + at + 28, 2);
      const uint64_t extra_len = le(p_ + at + 30, 2);
      const uint64_t comment_len = le(p_ + at + 32, 2);
      e.local_offset = le(p_ + at + 42, 4);
      const uint64_t next = at + 46 + name_len + extra_len + comment_len;
      if (next > dir_offset + dir_size) fail(fmt::format("zip directory entry {} is damaged", i));
      e.name.assign(p_ + at + 46, name_len);
      read_zip64_extra(e, at + 46 + name_len, extra_len);
      check_entry(e);
      const std::string_view name = e.name;
      if (name == "data.pkl" || (name.size() > 9 && name.substr(name.size() - 9) == "/data.pkl" &&
                                 name.find('/') == name.size() - 9)) {
        if (data_pkl) fail("two data.pkl records");
        data_pkl = e;
      }
      entries_.push_back(e);
      at = next;
    }
    return data_pkl;
  }

  const char* data(const Entry& e) const { return p_ + e.data_offset; }

 private:
  void read_zip64_extra(Entry& e, uint64_t at, uint64_t length) const {
    const uint64_t end = at + length;
    while (at + 4 <= end) {
      const uint64_t id = le(p_ + at, 2), field = le(p_ + at + 2, 2);
      if (at + 4 + field > end) fail(fmt::format("'{}': damaged zip extra field", e.name));
      if (id == 0x0001) {
        uint64_t f = at + 4;
        auto take = [&](uint64_t& value) {
          if (value != k32Bit) return;
          if (f + 8 > at + 4 + field) fail(fmt::format("'{}': short zip64 extra field", e.name));
          value = le(p_ + f, 8);
          f += 8;
        };
        take(e.size);
        take(e.compressed);
        take(e.local_offset);
      }
      at += 4 + field;
    }
  }

  void check_entry(Entry& e) const {
    if (e.method != 0 && e.method != 8)
      fail(
          fmt::format("'{}' uses zip compression method {} (torch.save stores records; "
                      "deflate is also read)",
                      e.name, e.method));
    if (e.method == 0 && e.compressed != e.size)
      fail(fmt::format("stored record '{}' has {} bytes in the zip but claims {}", e.name,
                       e.compressed, e.size));
    // Deflate expands at most ~1032:1: a larger claim would only make the reader allocate it.
    if (e.method == 8 && e.size > e.compressed * 1032 + 65536)
      fail(fmt::format("deflated record '{}' claims {} bytes from {}", e.name, e.size,
                       e.compressed));
    if (!fits(e.local_offset, 30) || le(p_ + e.local_offset, 4) != kLocalHeader)
      fail(fmt::format("record '{}': no local header at offset {}", e.name, e.local_offset));
    const uint64_t header = 30 + le(p_ + e.local_offset + 26, 2) + le(p_ + e.local_offset + 28, 2);
    e.data_offset = e.local_offset + header;
    if (!fits(e.data_offset, e.compressed))
      fail(
          fmt::format("record '{}' ({} bytes at offset {}) runs past the end of the file ({} "
                      "bytes; truncated download?)",
                      e.name, e.compressed, e.data_offset, n_));
  }

  const char* p_;
  uint64_t n_;
  const std::string& origin_;
};

// The globals a torch.save checkpoint of tensors and dicts refers to (and LibTorch can build).
bool allowed_global(std::string_view module, std::string_view name) {
  if (module == "collections") return name == "OrderedDict";
  if (module == "torch._utils")
    return name == "_rebuild_tensor" || name == "_rebuild_tensor_v2" ||
           name == "_rebuild_parameter";
  if (module == "torch.jit._pickle")  // what LibTorch's own pickle_save writes
    return name == "build_intlist" || name == "build_tensorlist" || name == "build_doublelist" ||
           name == "build_boollist" || name == "build_tensor_from_id" || name == "restore_type_tag";
  if (module == "torch") {
    if (name == "device") return true;
    // Typed storages: torch.FloatStorage, torch.BFloat16Storage, torch.Float8_e4m3fnStorage...
    constexpr std::string_view kSuffix = "Storage";
    if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix)
      return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
  }
  return false;
}

// Writes TorchZip::libtorch_pickle while check_pickle walks data.pkl: every opcode as it is,
// except
//  - collections.OrderedDict: the class is written as an empty dict (and memoised as such; a
//    later GET of the class writes a fresh one), its call `()` REDUCE is left out, so the dict
//    the class became is the OrderedDict;
//  - BUILD (a state dict's `_metadata` attribute): the opcodes that made the state are taken
//    back out of the copy and BUILD is left out (LibTorch reads BUILD as a call, and has no POP);
//  - FRAME, a length hint the changes above would falsify.
// A model of the stack -- where each entry's opcodes begin in the copy -- finds a state's opcodes.
class LibTorchPickleWriter {
 public:
  LibTorchPickleWriter(std::string& out, const std::string& origin) : out_(out), origin_(origin) {
    out_.clear();
  }

  bool holds_ordered_dict(uint64_t memo) const { return ordered_dict_memo_.count(memo) > 0; }

  // `op` (checked) with its `bytes`; `memoised`: the index a PUT-like opcode stores at;
  // `ordered_dict_class`: it pushes collections.OrderedDict.
  void write(uint8_t op, std::string_view bytes, uint64_t at, std::optional<uint64_t> memoised,
             bool ordered_dict_class) {
    at_ = at;
    if (awaiting_reduce_) {  // OrderedDict ()
      if (op != 'R') not_called();
      awaiting_reduce_ = false;
      squash(2);  // the call's result: the dict the class became
      return;
    }
    if (awaiting_call_) {  // OrderedDict, memoised maybe
      if (memoised) {
        ordered_dict_memo_.insert(*memoised);
        out_.append(bytes);
        return;
      }
      if (op != ')') not_called();
      awaiting_call_ = false;
      awaiting_reduce_ = true;
      push(out_.size(), false);  // the empty tuple, written as nothing
      return;
    }
    if (memoised) ordered_dict_memo_.erase(*memoised);  // a PUT over an earlier entry
    if (ordered_dict_class) {
      push(out_.size(), false);
      out_.push_back('}');
      awaiting_call_ = true;
      return;
    }
    if (op == 'b') {  // BUILD: [object, state] -> [object]
      const Entry state = pop();
      if (stack_.empty() || stack_.back().mark) fail("BUILD has no object to set a state on");
      out_.resize(state.start);
      return;
    }
    const size_t start = out_.size();
    apply(op, start);
    if (op != 0x95) out_.append(bytes);
  }

 private:
  struct Entry {
    size_t start;  // where the opcodes that made it begin in the copy
    bool mark;
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(fmt::format("{}: data.pkl byte {}: {}", origin_, at_, what));
  }
  [[noreturn]] void not_called() const {
    fail("collections.OrderedDict is not called as OrderedDict(), as torch.save writes it");
  }
  void push(size_t start, bool mark) { stack_.push_back({start, mark}); }
  Entry pop() {
    if (stack_.empty() || stack_.back().mark) fail("an opcode takes a value the stack lacks");
    const Entry e = stack_.back();
    stack_.pop_back();
    return e;
  }
  // Pops `count` values and pushes their result (made where the deepest began).
  void squash(int count) {
    size_t start = 0;
    for (int k = 0; k < count; ++k) start = pop().start;
    push(start, false);
  }
  // Pops down to the topmost mark, and the mark; returns where the mark began.
  size_t pop_to_mark() {
    while (!stack_.empty() && !stack_.back().mark) stack_.pop_back();
    if (stack_.empty()) fail("an opcode needs a MARK the stack lacks");
    const size_t start = stack_.back().start;
    stack_.pop_back();
    return start;
  }
  // The stack effect of every other opcode check_pickle accepts.
  void apply(uint8_t op, size_t start) {
    switch (op) {
      case '.':
      case 0x80:  // PROTO
      case 0x95:  // FRAME
      case 'q':
      case 'r':
      case 'p':
      case 0x94:  // PUT-like
        break;
      case '(':
        push(start, true);
        break;
      case 0x85:  // TUPLE1
      case 'Q':   // BINPERSID
        squash(1);
        break;
      case 0x86:  // TUPLE2
      case 'R':   // REDUCE
        squash(2);
        break;
      case 0x87:  // TUPLE3
        squash(3);
        break;
      case 't':
      case 'l':
      case 'd':
      case 0x91:  // TUPLE, LIST, DICT, FROZENSET from a mark
        push(pop_to_mark(), false);
        break;
      case 'e':
      case 'u':
      case 0x90:  // APPENDS, SETITEMS, ADDITEMS into the object below the mark
      case '1':   // POP_MARK
        pop_to_mark();
        break;
      case 'a':  // APPEND
      case '0':  // POP
        pop();
        break;
      case 's':  // SETITEM
        pop();
        pop();
        break;
      default:  // every other accepted opcode pushes one value
        push(start, false);
    }
  }

  std::string& out_;
  const std::string& origin_;
  uint64_t at_ = 0;
  std::vector<Entry> stack_;
  std::set<uint64_t> ordered_dict_memo_;  // memo entries holding the OrderedDict class
  bool awaiting_call_ = false;
  bool awaiting_reduce_ = false;
};

// Checks data.pkl and writes the copy LibTorch's unpickler reads (TorchZip::libtorch_pickle).
void check_pickle(const char* p, uint64_t n, const std::string& origin, std::string& libtorch) {
  auto fail = [&](uint64_t at, const std::string& what) {
    throw FormatError(fmt::format("{}: data.pkl byte {}: {}", origin, at, what));
  };
  uint64_t memo = 0;  // the pickler numbers memo entries 0, 1, 2, ... in order
  uint64_t i = 0;
  auto need = [&](uint64_t at, uint64_t bytes, const char* what) {
    if (bytes > n - i) fail(at, fmt::format("{} needs {} bytes, {} left", what, bytes, n - i));
  };
  auto line = [&](uint64_t at) {
    const void* nl = std::memchr(p + i, '\n', n - i);
    if (!nl) fail(at, "unterminated text argument");
    const uint64_t len = static_cast<uint64_t>(static_cast<const char*>(nl) - (p + i));
    std::string_view text(p + i, len);
    i += len + 1;
    return text;
  };
  auto put = [&](uint64_t at, uint64_t index) {
    if (index > memo)
      fail(at, fmt::format("memo index {} out of sequence (next is {})", index, memo));
    if (index == memo) ++memo;
  };
  auto get = [&](uint64_t at, uint64_t index) {
    if (index >= memo) fail(at, fmt::format("memo index {} was never stored", index));
  };
  LibTorchPickleWriter copy(libtorch, origin);
  while (i < n) {
    const uint64_t at = i;
    const auto op = static_cast<uint8_t>(p[i++]);
    bool ordered_dict_class = false;   // pushes collections.OrderedDict
    std::optional<uint64_t> memoised;  // the memo index a PUT-like opcode stores at
    switch (op) {
      case '.':  // STOP
        copy.write(op, std::string_view(p + at, 1), at, std::nullopt, false);
        return;
      // No argument.
      case '(':
      case '0':
      case '1':
      case '2':
      case 'N':
      case 'Q':
      case 'R':
      case 'a':
      case 'b':
      case 'd':
      case '}':
      case 'e':
      case 'l':
      case ']':
      case 's':
      case 't':
      case ')':
      case 'u':
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8f:
      case 0x90:
      case 0x91:
        break;
      case 0x94:  // MEMOIZE
        memoised = memo;
        put(at, memo);
        break;
      // Fixed-size arguments.
      case 'K':
      case 0x80:
        need(at, 1, "argument");
        i += 1;
        break;  // BININT1, PROTO
      case 'M':
        need(at, 2, "argument");
        i += 2;
        break;  // BININT2
      case 'J':
        need(at, 4, "argument");
        i += 4;
        break;  // BININT
      case 'G':
        need(at, 8, "argument");
        i += 8;
        break;  // BINFLOAT
      case 0x95:
        need(at, 8, "argument");
        i += 8;
        break;  // FRAME
      case 'h':
      case 'q': {  // BINGET, BINPUT
        need(at, 1, "memo index");
        const uint64_t index = static_cast<uint8_t>(p[i]);
        i += 1;
        op == 'h' ? get(at, index) : put(at, index);
        if (op == 'q') memoised = index;
        if (op == 'h') ordered_dict_class = copy.holds_ordered_dict(index);
        break;
      }
      case 'j':
      case 'r': {  // LONG_BINGET, LONG_BINPUT
        need(at, 4, "memo index");
        const uint64_t index = le(p + i, 4);
        i += 4;
        op == 'j' ? get(at, index) : put(at, index);
        if (op == 'r') memoised = index;
        if (op == 'j') ordered_dict_class = copy.holds_ordered_dict(index);
        break;
      }
      // Length-prefixed arguments: the length must fit in what is left.
      case 'U':
      case 'C':
      case 0x8c:
      case 0x8a: {  // SHORT_BINSTRING/BYTES/UNICODE, LONG1
        need(at, 1, "length");
        const uint64_t len = static_cast<uint8_t>(p[i]);
        i += 1;
        need(at, len, "string");
        i += len;
        break;
      }
      case 'T':
      case 'B':
      case 'X':
      case 0x8b: {  // BINSTRING, BINBYTES, BINUNICODE, LONG4
        need(at, 4, "length");
        const uint64_t len = le(p + i, 4);
        i += 4;
        need(at, len, "string");
        i += len;
        break;
      }
      case 0x8d:
      case 0x8e: {  // BINUNICODE8, BINBYTES8
        need(at, 8, "length");
        const uint64_t len = le(p + i, 8);
        i += 8;
        need(at, len, "string");
        i += len;
        break;
      }
      // Text arguments up to a newline (protocol 0).
      case 'F':
      case 'I':
      case 'L':
      case 'S':
      case 'V':
        line(at);
        break;
      case 'g':
      case 'p': {  // GET, PUT with a decimal index
        const std::string_view text = line(at);
        uint64_t index = 0;
        if (text.empty() || text.size() > 9 ||
            !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
          fail(at, "bad memo index");
        for (char c : text) index = index * 10 + static_cast<uint64_t>(c - '0');
        op == 'g' ? get(at, index) : put(at, index);
        if (op == 'p') memoised = index;
        if (op == 'g') ordered_dict_class = copy.holds_ordered_dict(index);
        break;
      }
      case 'c': {  // GLOBAL module\nname\n
        const std::string_view module = line(at);
        const std::string_view name = line(at);
        if (!allowed_global(module, name))
          fail(at, fmt::format("asks for the Python global '{}.{}', which a weights file never "
                               "needs; only torch tensors, storages and dicts are read",
                               module, name));
        ordered_dict_class = module == "collections" && name == "OrderedDict";
        break;
      }
      default:
        fail(at, fmt::format("pickle opcode 0x{:02x} is not used by torch.save for weights "
                             "(code-running or unsupported opcodes are refused)",
                             op));
    }
    copy.write(op, std::string_view(p + at, i - at), at, memoised, ordered_dict_class);
  }
  fail(n, "ends without a STOP opcode (truncated?)");
}

}  // namespace

TorchZip check_torch_zip(const char* bytes, size_t size, const std::string& origin) {
  ZipCheck zip(bytes, size, origin);
  const std::optional<Entry> pkl = zip.find_data_pkl();
  if (!pkl) zip.fail("no data.pkl record (not written by torch.save?)");
  if (pkl->method != 0)
    zip.fail(fmt::format("'{}' is compressed; torch.save stores it (re-save the checkpoint)",
                         pkl->name));
  TorchZip out;
  check_pickle(zip.data(*pkl), pkl->size, origin, out.libtorch_pickle);
  // Records live in the archive's folder ("<name>/data/0"), the folder data.pkl is in.
  const std::string folder =
      pkl->name.substr(0, pkl->name.size() - std::string_view("data.pkl").size());
  for (const Entry& e : zip.entries_) {
    if (e.name.compare(0, folder.size(), folder) != 0 || e.method != 0) continue;
    out.records[e.name.substr(folder.size())] = std::string_view(zip.data(e), e.size);
  }
  auto v = out.records.find(".data/version");
  if (v == out.records.end()) v = out.records.find("version");
  if (v != out.records.end()) {
    const std::string_view text = v->second;
    for (char c : text) {
      if (c == '\n') break;
      if (c < '0' || c > '9' || out.version > 1000)
        zip.fail(fmt::format("version record '{}' is not a small number", text.substr(0, 16)));
      out.version = out.version * 10 + static_cast<uint64_t>(c - '0');
    }
  }
  return out;
}

}  // namespace longlive::io
