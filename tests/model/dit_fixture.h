#pragma once
// Reads the DiT streaming fixtures: configuration from their metadata, recorded noise replay.
#include <ATen/ATen.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "fixtures.h"
#include "longlive/generator.h"
#include "longlive/weights.h"
#include "tensor_compare.h"

namespace longlive::test {

inline nlohmann::json metadata_json(const WeightStore& store, const std::string& key) {
  return nlohmann::json::parse(store.metadata().at(key));
}

inline WanConfig config_from_metadata(const nlohmann::json& c) {
  WanConfig config;
  config.dim = c.at("dim");
  config.ffn_dim = c.at("ffn_dim");
  config.num_heads = c.at("num_heads");
  config.num_layers = c.at("num_layers");
  config.freq_dim = c.at("freq_dim");
  config.text_dim = c.at("text_dim");
  config.text_len = c.at("text_len");
  config.in_channels = c.at("in_dim");
  config.out_channels = c.at("out_dim");
  const auto patch = c.at("patch_size");
  config.patch = {patch[0], patch[1], patch[2]};
  config.eps = c.at("eps");
  config.qk_norm = c.at("qk_norm");
  config.cross_attn_norm = c.at("cross_attn_norm");
  return config;
}

// Generator options of a stream fixture; latent size from its `noise` tensor.
inline GeneratorOptions options_from_stream(const WeightStore& stream) {
  const auto pipeline = metadata_json(stream, "pipeline");
  GeneratorOptions o;
  o.model = config_from_metadata(metadata_json(stream, "config"));
  o.denoising_steps = pipeline.at("denoising_step_list").get<std::vector<double>>();
  o.warp_denoising_step = pipeline.at("warp_denoising_step");
  o.timestep_shift = pipeline.at("timestep_shift");
  o.frames_per_block = pipeline.at("num_frame_per_block");
  const auto& noise = stream.get("noise");
  // The reference's global attention (local_attn_size -1) over a finite video is a window as long
  // as the video: its cache holds every frame and its re-cache re-encodes all frames so far.
  const int64_t window = pipeline.at("local_attn_size");
  o.local_attn_frames = window == -1 ? noise.size(1) : window;
  o.sink_frames = pipeline.at("sink_size");
  o.global_sink = pipeline.at("global_sink");
  o.latent_height = noise.size(3);
  o.latent_width = noise.size(4);
  return o;
}

// Replays the recorded draws: block b's initial noise is frames [b*F, (b+1)*F) of `noise`, and
// re-noise draws are `<prefix>b{b}.s{s}.renoise`.
class RecordedNoise final : public NoiseSource {
 public:
  RecordedNoise(const WeightStore& stream, std::string prefix, int64_t frames_per_block)
      : stream_(stream), prefix_(std::move(prefix)), frames_(frames_per_block) {}
  at::Tensor initial(int64_t block, at::IntArrayRef shape,
                     const at::TensorOptions& options) override {
    return stream_.get("noise").narrow(1, block * frames_, frames_).reshape(shape).to(options);
  }
  at::Tensor renoise(int64_t block, int64_t step, at::IntArrayRef shape,
                     const at::TensorOptions& options) override {
    return stream_
        .get(prefix_ + "b" + std::to_string(block) + ".s" + std::to_string(step) + ".renoise")
        .reshape(shape)
        .to(options);
  }

 private:
  const WeightStore& stream_;
  std::string prefix_;
  int64_t frames_;
};

// The fixture set's DiT weights and stream recording, with the generator options its metadata
// gives (tests that run the generator against itself, not against the recorded draws).
struct DitStream {
  WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions options = options_from_stream(stream);

  // A recorded prompt's embeddings, float32.
  at::Tensor prompt(const std::string& name) const {
    return stream.get("prompt." + name).to(at::kFloat);
  }
  // A generator on `o` started on prompt A with `seed`, `blocks` blocks made.
  std::unique_ptr<StreamGenerator> started(const GeneratorOptions& o, int64_t blocks,
                                           uint64_t seed) const {
    auto g = std::make_unique<StreamGenerator>(weights, o);
    g->start(prompt("A"), seed);
    for (int64_t i = 0; i < blocks; ++i) g->next_block();
    return g;
  }
  // The window's length in blocks plus two: a re-cache then starts past the sink.
  static int64_t blocks_past_window(const GeneratorOptions& o) {
    return o.local_attn_frames / o.frames_per_block + 2;
  }
};

}  // namespace longlive::test
