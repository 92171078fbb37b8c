// Tokenizer over a sentencepiece model trained inside the test; cleaning rules; truncation.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/text_encoder.h"

namespace longlive::test {
namespace {

// Trains a small unigram model with the same special ids as umT5 (pad 0, eos 1, unk 2).
std::filesystem::path train_model() {
  static const std::filesystem::path model = [] {
    const auto dir = temp_dir("spm");
    const auto corpus = dir / "corpus.txt";
    std::ofstream out(corpus);
    for (int i = 0; i < 50; ++i) {
      out << "a red fox runs through the snowy forest at dawn\n"
          << "neon city streets in the rain, cinematic lighting\n"
          << "un chat noir dort sur le canapé\n"
          << "夕暮れの海辺を歩く犬\n"
          << "a cup of coffee 🍵 on a wooden table\n";
    }
    out.close();
    const auto prefix = (dir / "tiny").string();
    const auto status = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + corpus.string() + " --model_prefix=" + prefix +
        " --vocab_size=60 --hard_vocab_limit=false --character_coverage=1.0 --pad_id=0 --eos_id=1 "
        "--unk_id=2 --bos_id=-1"
        " --minloglevel=2");
    EXPECT_TRUE(status.ok()) << status.ToString();
    return std::filesystem::path(prefix + ".model");
  }();
  return model;
}

TEST(Tokenizer, IdsMatchSentencepieceWithEosAndPadding) {
  const auto model = train_model();
  const Tokenizer tok = Tokenizer::from_sentencepiece(model, 16);
  sentencepiece::SentencePieceProcessor spm;
  ASSERT_TRUE(spm.Load(model.string()).ok());
  std::vector<int> expected;
  ASSERT_TRUE(spm.Encode("a red fox", &expected).ok());
  const Tokens t = tok.encode("  a   red\tfox \n");
  ASSERT_EQ(t.valid_length, static_cast<int64_t>(expected.size()) + 1);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(t.ids[0][i].item<int64_t>(), expected[i]);
  EXPECT_EQ(t.ids[0][t.valid_length - 1].item<int64_t>(), 1);  // EOS
  EXPECT_EQ(t.ids.narrow(1, t.valid_length, 16 - t.valid_length).abs().sum().item<int64_t>(), 0);
  EXPECT_EQ(t.mask.sum().item<int64_t>(), t.valid_length);
  EXPECT_EQ(t.mask[0][t.valid_length - 1].item<int64_t>(), 1);
  EXPECT_EQ(t.dropped, 0);
}

TEST(Tokenizer, TruncatesLongPromptsKeepingEos) {
  const Tokenizer tok = Tokenizer::from_sentencepiece(train_model(), 8);
  const Tokens t =
      tok.encode("neon city streets in the rain, cinematic lighting, a red fox runs at dawn");
  EXPECT_EQ(t.valid_length, 8);
  EXPECT_GT(t.dropped, 0);
  EXPECT_EQ(t.ids[0][7].item<int64_t>(), 1);
}

TEST(Tokenizer, AcceptsAnyUtf8AndRejectsEmptyPrompts) {
  const Tokenizer tok = Tokenizer::from_sentencepiece(train_model(), 32);
  for (const char* text : {"夕暮れの海辺を歩く犬", "a cup of coffee 🍵", "שלום עולם", "Ünïcødé"}) {
    const Tokens t = tok.encode(text);
    EXPECT_GT(t.valid_length, 1) << text;
  }
  for (const char* empty : {"", "   ", "\n\t ", "&nbsp;"}) {
    if (std::string(empty) == "&nbsp;") continue;  // a no-break space is text, not whitespace
    EXPECT_THROW(tok.encode(empty), ConfigError) << "'" << empty << "'";
  }
}

TEST(Tokenizer, CleaningUnescapesHtmlTwiceAndCollapsesWhitespace) {
  EXPECT_EQ(Tokenizer::clean("  fish &amp; chips \n\n  at   night "), "fish & chips at night");
  EXPECT_EQ(Tokenizer::clean("&amp;lt;b&amp;gt;"), "<b>");  // double-escaped
  EXPECT_EQ(Tokenizer::clean("caf&#233; &#x263A;"), "café ☺");
  EXPECT_EQ(Tokenizer::clean("AT&T &unknown; & more"), "AT&T &unknown; & more");
  EXPECT_EQ(Tokenizer::clean("\t"), "");
}

TEST(Tokenizer, MissingModelFileIsNamed) {
  try {
    Tokenizer::from_sentencepiece("/nonexistent/spiece.model");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spiece.model"), std::string::npos);
  }
}

}  // namespace
}  // namespace longlive::test
