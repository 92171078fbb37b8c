// PyTorch zip checkpoints: a real torch.save file and LibTorch's own serializer, nested dicts.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>

#include "fixtures.h"
#include "io/torch_checkpoint.h"
#include "longlive/error.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

const std::filesystem::path kData =
    std::filesystem::path(LONGLIVE_TEST_SOURCE_DIR) / "tests" / "data";

TEST(TorchCheckpoint, TorchSaveFileLoadsWithExactValues) {
  const WeightStore expected = WeightStore::open(kData / "nested_checkpoint_expected.safetensors");
  const WeightStore all = WeightStore::open(kData / "nested_checkpoint.pt");
  EXPECT_EQ(all.size(), expected.size());  // the int and string entries are not tensors
  for (const auto& name : expected.names()) {
    ASSERT_TRUE(all.contains(name)) << name;
    EXPECT_EQ(all.get(name).scalar_type(), expected.get(name).scalar_type()) << name;
    EXPECT_TRUE(at::equal(all.get(name), expected.get(name))) << name;
  }
}

// Modules' state_dict()s, as every public checkpoint holds: OrderedDicts (LibTorch's unpickler
// alone reads those as None), with `_metadata` set through BUILD, the class memoised and used
// again, nested under "generator" as LongLive's files are
// (tests/data/make_state_dict_checkpoints.py).
TEST(TorchCheckpoint, StateDictsLoadWithExactValues) {
  const WeightStore expected = WeightStore::open(kData / "state_dict_expected.safetensors");
  const WeightStore flat = WeightStore::open(kData / "state_dict.pth");
  const WeightStore nested = WeightStore::open(kData / "state_dict_nested.pt");
  const WeightStore generator = WeightStore::open(kData / "state_dict_nested.pt", "generator");
  EXPECT_EQ(flat.size(), generator.size());
  EXPECT_EQ(nested.size(), 2 * flat.size());
  for (const auto& name : expected.names()) {
    const WeightStore& store = name.rfind("generator", 0) == 0 ? nested : flat;
    ASSERT_TRUE(store.contains(name)) << name;
    EXPECT_EQ(store.get(name).scalar_type(), expected.get(name).scalar_type()) << name;
    EXPECT_TRUE(at::equal(store.get(name), expected.get(name))) << name;
  }
  for (const auto& name : generator.names())
    EXPECT_TRUE(at::equal(generator.get(name), expected.get("generator." + name))) << name;
}

// A file's tensors view its mapping: they outlive the store, and writing one changes neither the
// file nor a later load (the pages are the process's own once written).
TEST(TorchCheckpoint, MappedTensorsOutliveTheStoreAndStayWritable) {
  const WeightStore expected = WeightStore::open(kData / "state_dict_expected.safetensors");
  at::Tensor kept;
  {
    const WeightStore store = WeightStore::open(kData / "state_dict.pth");
    kept = store.get("blocks.1.proj.weight");
  }
  EXPECT_TRUE(at::equal(kept, expected.get("blocks.1.proj.weight")));
  kept.add_(1);
  EXPECT_TRUE(at::equal(kept, expected.get("blocks.1.proj.weight") + 1));
  EXPECT_TRUE(at::equal(WeightStore::open(kData / "state_dict.pth").get("blocks.1.proj.weight"),
                        expected.get("blocks.1.proj.weight")));
}

TEST(TorchCheckpoint, DictKeySelectsGeneratorAndPrefixStrips) {
  const WeightStore gen = WeightStore::open(kData / "nested_checkpoint.pt", "generator");
  EXPECT_TRUE(gen.contains("model.patch_embedding.bias"));
  EXPECT_FALSE(gen.contains("base_model.model.blocks.0.ffn.0.lora_A.weight"));
  const WeightStore stripped = gen.strip_prefix("model.");
  EXPECT_TRUE(stripped.contains("blocks.0.self_attn.q.weight"));
  EXPECT_EQ(stripped.get("patch_embedding.bias").scalar_type(), at::kBFloat16);
  EXPECT_THROW(WeightStore::open(kData / "nested_checkpoint.pt", "generator_ema"), WeightError);
}

TEST(TorchCheckpoint, LibTorchPickleSaveRoundTripsNestedDicts) {
  c10::Dict<std::string, at::Tensor> inner;
  inner.insert("w", at::randn({2, 3}));
  inner.insert("b", at::arange(4, at::kLong));
  c10::impl::GenericDict outer(c10::StringType::get(), c10::AnyType::get());
  outer.insert("generator", inner);
  outer.insert("epoch", 7);
  const std::vector<char> bytes = torch::jit::pickle_save(outer);
  const auto path = temp_dir("pickle") / "saved.pt";
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const WeightStore s = WeightStore::open(path);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(at::equal(s.get("generator.w"), inner.at("w")));
  EXPECT_TRUE(at::equal(s.get("generator.b"), inner.at("b")));
}

// A well-formed torch.save-style archive around `pkl` as its data.pkl, with storage "0".
std::vector<char> archive_with_pickle(const std::string& pkl,
                                      const std::string& storage = std::string(16, '\0')) {
  std::vector<char> out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
    out.insert(out.end(), static_cast<const char*>(buf), static_cast<const char*>(buf) + n);
    return n;
  });
  writer.writeRecord("data.pkl", pkl.data(), pkl.size());
  writer.writeRecord("data/0", storage.data(), storage.size());
  writer.writeEndOfFile();
  return out;
}

std::string refusal(const std::vector<char>& bytes) {
  try {
    io::read_torch_checkpoint(bytes, "evil.pt", {});
  } catch (const FormatError& e) {
    return e.what();
  }
  ADD_FAILURE() << "read a checkpoint that should be refused";
  return {};
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

// A checkpoint from the internet runs no code: pickle.dumps of an object whose __reduce__ is
// os.system is refused before LibTorch's unpickler sees it.
TEST(TorchCheckpointSafety, RefusesGlobalsOtherThanTensorsAndDicts) {
  // Literals split where a hex escape would swallow the next letter.
  const std::string pkl(
      "\x80\x02}q\x00X\x01\x00\x00\x00wq\x01"
      "cposix\nsystem\nq\x02X\n\x00\x00\x00"
      "echo pwnedq\x03\x85q\x04Rq\x05s.",
      54);
  const std::string msg = refusal(archive_with_pickle(pkl));
  expect_contains(msg, "evil.pt");
  expect_contains(msg, "'posix.system'");
}

// Found by fuzz_torch_checkpoint: a BINUNICODE length of 1.9 GB in a 250-byte file made
// LibTorch's unpickler reserve the whole string before reading it.
TEST(TorchCheckpointSafety, RefusesLengthsLongerThanTheFile) {
  const std::string pkl(
      "\x80\x02X\x00\x00\x00\x73"
      "abc.",
      11);
  expect_contains(refusal(archive_with_pickle(pkl)),
                  "data.pkl byte 2: string needs 1929379840 bytes, 4 left");
}

// A memo index far ahead of the pickler's sequence would size LibTorch's memo table from it.
TEST(TorchCheckpointSafety, RefusesMemoIndicesOutOfSequence) {
  const std::string pkl("\x80\x02]r\xff\xff\xff\xff.", 9);
  expect_contains(refusal(archive_with_pickle(pkl)), "memo index 4294967295 out of sequence");
}

TEST(TorchCheckpointSafety, RefusesOpcodesTorchSaveNeverWrites) {
  // INST: protocol 0's "import and call" (os\nsystem\n with MARK'd arguments).
  const std::string pkl("(S'echo pwned'\nios\nsystem\n.", 27);
  expect_contains(refusal(archive_with_pickle(pkl)),
                  "pickle opcode 0x69 is not used by torch.save");
}

// {"w": a 4-element tensor at `offset` on storage "0" (4 elements) of torch.<type>Storage}, as
// torch.save writes it.
std::string tensor_pickle(const std::string& storage_type, char offset = 0) {
  return std::string(
             "\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00"
             "storagectorch\n",
             63) +
         storage_type +
         std::string(
             "\nX\x01\x00\x00\x00"
             "0X\x03\x00\x00\x00"
             "cpuK\x04tQK",
             20) +
         offset +
         std::string(
             "K\x04\x85K\x01\x85\x89"
             "ccollections\nOrderedDict\n)RtRs.",
             38);
}

TEST(TorchCheckpointSafety, ReadsAHandWrittenTensorPickle) {
  const WeightStore s = io::read_torch_checkpoint(
      archive_with_pickle(tensor_pickle("ByteStorage"), std::string("\x01\x02\x03\x04")), "ok.pt",
      {});
  ASSERT_TRUE(s.contains("w"));
  EXPECT_TRUE(at::equal(s.get("w"), at::arange(1, 5, at::kByte)));
}

// The rewrite for LibTorch's unpickler takes OrderedDict only as torch.save writes it,
// OrderedDict() with no arguments, and a BUILD only onto a value: anything else is named.
TEST(TorchCheckpointSafety, RefusesOrderedDictsAndBuildsTorchSaveNeverWrites) {
  // OrderedDict([]) : called with a list.
  const std::string with_arguments(
      "\x80\x02"
      "ccollections\nOrderedDict\n]\x85R.",
      31);
  expect_contains(refusal(archive_with_pickle(with_arguments)),
                  "collections.OrderedDict is not called as OrderedDict()");
  // The class alone, never called.
  const std::string never_called(
      "\x80\x02"
      "ccollections\nOrderedDict\n.",
      28);
  expect_contains(refusal(archive_with_pickle(never_called)),
                  "collections.OrderedDict is not called as OrderedDict()");
  // BUILD with nothing to build on.
  const std::string bare_build("\x80\x02}b.", 5);
  expect_contains(refusal(archive_with_pickle(bare_build)),
                  "BUILD has no object to set a state on");
}

// Found by fuzz_torch_checkpoint: LibTorch rebuilds a torch.Int4Storage tensor that no kernel can
// copy; the first conversion threw c10::NotImplementedError.
TEST(TorchCheckpointSafety, RefusesElementTypesWeightsNeverUse) {
  expect_contains(refusal(archive_with_pickle(tensor_pickle("Int4Storage"))),
                  "tensor 'w' has element type");
}

// As for safetensors: bool bytes other than 0/1 are undefined behaviour in every kernel.
TEST(TorchCheckpointSafety, RefusesBoolBytesOtherThanZeroOrOne) {
  expect_contains(refusal(archive_with_pickle(tensor_pickle("BoolStorage"),
                                              std::string("\x01\x00\x07\x01", 4))),
                  "tensor 'w' is bool but holds bytes other than 0 and 1");
}

// Found while writing the test above: LibTorch sizes a storage from the element count in the
// pickle, so a 4-element storage on a 1-byte record read past the heap block (inside LibTorch,
// where ASan cannot see it).
TEST(TorchCheckpointSafety, RefusesStoragesLargerThanTheirRecord) {
  expect_contains(refusal(archive_with_pickle(tensor_pickle("ByteStorage"), std::string("\x01"))),
                  "tensor 'w' claims a storage of 4 bytes but its record holds 1");
}

// Nor does it check a tensor's sizes, strides and offset against its storage.
TEST(TorchCheckpointSafety, RefusesTensorsReachingPastTheirStorage) {
  expect_contains(
      refusal(archive_with_pickle(tensor_pickle("ByteStorage", 2), std::string(4, 'x'))),
      "tensor 'w' (sizes [4], strides [1], offset 2) reaches past its storage of 4 "
      "elements");
}

TEST(TorchCheckpointSafety, TruncatedDownloadNamesTheProblem) {
  std::ifstream in(kData / "nested_checkpoint.pt", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);
  expect_contains(refusal(bytes), "no zip end-of-directory record (truncated download?)");
}

}  // namespace
}  // namespace longlive::test
