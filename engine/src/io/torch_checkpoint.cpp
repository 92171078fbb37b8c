#include "io/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/mapped_file.h"
#include "io/torch_zip_check.h"
#include "longlive/error.h"

namespace longlive::io {
namespace {

// LibTorch's unpickler gives a tensor the sizes, strides and offset the pickle names without
// checking them against its storage (a 4-element tensor on a 1-byte record reads past the heap
// block). The last element viewed must lie inside the storage.
void check_extent(const at::Tensor& t, const std::string& origin, const std::string& name) {
  if (t.numel() == 0) return;
  const uint64_t item = t.element_size();
  const uint64_t elements = t.storage().nbytes() / item;
  uint64_t last = 0;
  bool overflow = t.storage_offset() < 0;
  if (!overflow) last = static_cast<uint64_t>(t.storage_offset());
  for (int64_t d = 0; d < t.dim() && !overflow; ++d) {
    if (t.stride(d) < 0) {
      overflow = true;
      break;
    }
    uint64_t span = 0;
    overflow = __builtin_mul_overflow(static_cast<uint64_t>(t.size(d) - 1),
                                      static_cast<uint64_t>(t.stride(d)), &span) ||
               __builtin_add_overflow(last, span, &last);
  }
  if (overflow || last >= elements)
    throw FormatError(
        fmt::format("{}: tensor '{}' (sizes [{}], strides [{}], offset {}) reaches "
                    "past its storage of {} elements",
                    origin, name, fmt::join(t.sizes(), ", "), fmt::join(t.strides(), ", "),
                    t.storage_offset(), elements));
}

// Nested dicts deeper than this are not a state dict (and would only grow the stack).
constexpr int kMaxDictDepth = 32;

// Bytes of each storage record read, by the address of the copy handed to LibTorch.
using RecordSizes = std::map<const void*, size_t>;

void collect(const c10::IValue& value, const std::string& prefix, WeightStore& store,
             const std::string& origin, const RecordSizes& records, int depth = 0) {
  if (depth > kMaxDictDepth)
    throw FormatError(fmt::format("{}: dicts nested deeper than {} levels at '{}'", origin,
                                  kMaxDictDepth, prefix));
  if (value.isTensor()) {
    // Only the element types weights come in (those of safetensors): LibTorch also rebuilds
    // storages such as torch.Int4Storage that no kernel can read or convert.
    const at::Tensor& t = value.toTensor();
    switch (t.scalar_type()) {
      case at::kDouble:
      case at::kFloat:
      case at::kHalf:
      case at::kBFloat16:
      case at::kLong:
      case at::kInt:
      case at::kShort:
      case at::kChar:
      case at::kByte:
      case at::kBool:
      case at::kFloat8_e4m3fn:
      case at::kFloat8_e5m2:
        break;
      default:
        throw FormatError(
            fmt::format("{}: tensor '{}' has element type {}, which weights never "
                        "use",
                        origin, prefix, c10::toString(t.scalar_type())));
    }
    // LibTorch sizes a storage from the element count in the pickle, not from its record.
    const auto record = records.find(t.storage().data());
    const size_t have = record == records.end() ? 0 : record->second;
    if (t.storage().nbytes() > have)
      throw FormatError(
          fmt::format("{}: tensor '{}' claims a storage of {} bytes but its record "
                      "holds {}",
                      origin, prefix, t.storage().nbytes(), have));
    check_extent(t, origin, prefix);
    // A bool holding anything but 0 or 1 is undefined behaviour for every kernel that reads it.
    if (t.scalar_type() == at::kBool && t.numel() > 0 && t.view(at::kByte).gt(1).any().item<bool>())
      throw FormatError(fmt::format("{}: tensor '{}' is bool but holds bytes other than 0 and 1",
                                    origin, prefix));
    store.add(prefix, t, origin);
  } else if (value.isGenericDict()) {
    for (const auto& item : value.toGenericDict()) {
      if (!item.key().isString()) continue;  // non-string keys carry no weights we use
      const std::string key = item.key().toStringRef();
      collect(item.value(), prefix.empty() ? key : prefix + "." + key, store, origin, records,
              depth + 1);
    }
  }
  // Other values (ints, strings, configs) are not weights and are skipped.
}

// A storage viewing its record inside the mapped file, which it keeps mapped.
at::DataPtr view_record(std::string_view record, const std::shared_ptr<MappedFile>& file) {
  auto* keep = new std::shared_ptr<MappedFile>(file);
  return at::DataPtr(
      const_cast<char*>(record.data()), keep,
      [](void* ctx) { delete static_cast<std::shared_ptr<MappedFile>*>(ctx); },
      at::Device(at::kCPU));
}

// The checkpoint in `bytes`; with `file` (whose mapping `bytes` is), the storages view their
// records in place where aligned (torch.save aligns them to 64 bytes) instead of copying them.
WeightStore read_checkpoint(const char* bytes, size_t size, const std::string& origin,
                            std::string_view dict_key, const std::shared_ptr<MappedFile>& file) {
  // Sizes, opcodes and globals first: LibTorch's unpickler trusts them (see torch_zip_check.h).
  // Its records come from our checked zip reader, not LibTorch's, and land on the CPU.
  const TorchZip zip = check_torch_zip(bytes, size, origin);
  RecordSizes record_sizes;
  auto read_record = [&](const std::string& key) {
    const auto it = zip.records.find("data/" + key);
    if (it == zip.records.end())
      throw FormatError(
          fmt::format("{}: storage record 'data/{}' is missing or compressed", origin, key));
    const std::string_view record = it->second;
    const bool aligned = reinterpret_cast<uintptr_t>(record.data()) % 64 == 0;
    at::DataPtr data;
    if (file && aligned && !record.empty()) {
      data = view_record(record, file);
    } else {
      data = c10::GetCPUAllocator()->allocate(record.size());
      if (!record.empty()) std::memcpy(data.get(), record.data(), record.size());
    }
    record_sizes[data.get()] = record.size();
    return data;
  };
  size_t read = 0;
  auto reader = [&](char* out, size_t n) {
    n = std::min(n, zip.libtorch_pickle.size() - read);
    std::memcpy(out, zip.libtorch_pickle.data() + read, n);
    read += n;
    return n;
  };
  c10::IValue root;
  try {
    torch::jit::Unpickler unpickler(reader, nullptr, nullptr, read_record, at::Device(at::kCPU));
    if (zip.version > 0) unpickler.set_version(zip.version);
    root = unpickler.parse_ivalue();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint ({})", origin,
                                  e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint ({})", origin, e.what()));
  }
  WeightStore store;
  if (!dict_key.empty()) {
    if (!root.isGenericDict())
      throw FormatError(
          fmt::format("{}: top level is not a dict, cannot select '{}'", origin, dict_key));
    auto dict = root.toGenericDict();
    auto it = dict.find(c10::IValue(std::string(dict_key)));
    if (it == dict.end())
      throw WeightError(fmt::format("{}: has no top-level entry '{}'", origin, dict_key));
    collect(it->value(), "", store, origin, record_sizes);
  } else {
    collect(root, "", store, origin, record_sizes);
  }
  return store;
}

}  // namespace

WeightStore load_torch_checkpoint(const std::filesystem::path& path, std::string_view dict_key) {
  // Mapped, not read: a read into a buffer zeroes and faults in every page twice (buffer, then
  // the records' copies) -- ~170 MB/s here, over a minute for umT5-XXL's 11 GB.
  // Copy-on-write: these tensors were writable copies before, and stay writable.
  const auto file = std::make_shared<MappedFile>(path, /*copy_on_write=*/true);
  return read_checkpoint(reinterpret_cast<const char*>(file->data()), file->size(), path.string(),
                         dict_key, file);
}

WeightStore read_torch_checkpoint(const std::vector<char>& bytes, const std::string& origin,
                                  std::string_view dict_key) {
  return read_checkpoint(bytes.data(), bytes.size(), origin, dict_key, nullptr);
}

}  // namespace longlive::io
