// A model folder in the public downloads' names, formats and layout (random weights) opens as
// the real one does: the recursive file search, the safetensors and PyTorch-zip readers, the
// SentencePiece tokenizer, the DiT's sizes inferred from its shapes, a prompt through the
// folder's umT5, a block generated and the live decoder opened.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/performance.h"
#include "longlive/preset.h"
#include "longlive/random_model_folder.h"
#include "longlive/session.h"
#include "longlive/taehv.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

TEST(RandomModelFolder, OpensAsAModelFolderAndGenerates) {
  const std::filesystem::path dir = temp_dir("random_model_folder");
  const RandomModelFolder files = write_random_model_folder(dir, /*full=*/false, 5);
  EXPECT_TRUE(missing_model_files(dir).empty());
  for (const auto& file : {files.dit, files.text_encoder, files.tokenizer, files.taehv})
    EXPECT_TRUE(std::filesystem::is_regular_file(file)) << file;
  // The files hold what the downloads hold, by name.
  EXPECT_TRUE(WeightStore::open(files.dit).contains("blocks.1.self_attn.q.weight"));
  EXPECT_TRUE(WeightStore::open(files.text_encoder).contains("token_embedding.weight"));

  ModelSpec spec;
  spec.folder = dir;
  spec.device = at::Device(at::kCPU);
  SessionFactory factory(spec);
  Preset preset;
  preset.name = "folder";
  preset.local_attn_frames = 6;
  auto session = factory.open(preset, 32, 32);
  ASSERT_NE(session->text, nullptr);
  ASSERT_NE(session->decoder, nullptr);
  EXPECT_GE(factory.stats().weight_loads, 3);  // at least DiT, umT5 and TAEHV read

  auto first_block = [&](const std::string& prompt) {
    session->generator->start(session->embed(PromptMix::single(prompt)), 3);
    return session->generator->next_block().clone();
  };
  const at::Tensor fox = first_block("a red fox");
  EXPECT_TRUE(fox.isfinite().all().item<bool>());
  EXPECT_GT(fox.abs().max().item<float>(), 0.f);
  // The prompt reaches the DiT through the folder's umT5: another prompt, another block.
  EXPECT_FALSE(at::allclose(fox, first_block("neon city streets in the rain")));
}

// taew2_1.pth holds TAEHV's encoder too: a preset's input_encoder taehv reads it from the folder
// (once, shared); a folder without the file says so, naming the folder and the preset field.
TEST(RandomModelFolder, TheTaehvFileGivesTheInputsEncoder) {
  const std::filesystem::path dir = temp_dir("random_model_folder_taehv");
  const RandomModelFolder files = write_random_model_folder(dir, /*full=*/false, 6);
  EXPECT_TRUE(WeightStore::open(files.taehv).contains("encoder.17.weight"));
  ModelSpec spec;
  spec.folder = dir;
  spec.device = at::Device(at::kCPU);
  SessionFactory factory(spec);
  const auto encoder = factory.taehv_encoder();
  EXPECT_EQ(factory.taehv_encoder(), encoder);  // built once
  TaehvEncoder::Stream stream;
  EXPECT_EQ(encoder->encode_next(at::rand({4, 3, 16, 24}), stream).sizes(),
            at::IntArrayRef({1, 16, 2, 3}));

  std::filesystem::remove(files.taehv);
  SessionFactory without(spec);
  try {
    without.taehv_encoder();
    FAIL() << "no taew2_1.pth, yet a TAEHV encoder";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(dir.string()), std::string::npos) << what;
    EXPECT_NE(what.find("input_encoder"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace longlive::test
