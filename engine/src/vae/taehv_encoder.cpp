// TAEHV encoder (Wan 2.1 variant). Layer layout of the reference `encoder` Sequential:
//   0 conv3x3 (3 -> 64) + 1 ReLU, then three stages of [TPool (a 1x1 conv over `stride`
//   consecutive frames stacked along the channels), conv3x3 stride 2 without bias, 3 MemBlocks]
//   at indexes 2..6, 7..11, 12..16 (strides 2, 2, 1), then the output conv3x3 (index 17, 64 -> 16).
// A MemBlock sees its input and the previous time step's input (zeros at the start of a video);
// the streaming state is the last frame each MemBlock saw.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "longlive/error.h"
#include "longlive/taehv.h"
#include "taehv_weights.h"

namespace longlive {
namespace {

constexpr int64_t kStages = 3;
constexpr int64_t kMemBlocksPerStage = 3;
constexpr int64_t kFirstStageIndex = 2;  // encoder.2: the first TPool

}  // namespace

TaehvEncoder::TaehvEncoder(const WeightStore& w, at::Device device, at::ScalarType dtype)
    : device_(device), dtype_(dtype), cuda_(device.is_cuda()) {
  auto load = [&](const std::string& name, int64_t dims) {
    if (!w.contains(name))
      throw WeightError(
          fmt::format("TAEHV encoder: no tensor '{}' (taew2_1's encoder.* expected)", name));
    const at::Tensor& t = w.get(name);
    if (t.dim() != dims)
      throw WeightError(fmt::format("{}: {} has shape [{}], expected {} dimensions",
                                    w.source_of(name), name, fmt::join(t.sizes(), ", "), dims));
    const at::Tensor moved = t.to(device_, dtype_);
    // Conv weights in the activations' layout (else cuDNN converts them on every call).
    return cuda_ && dims == 4 ? moved.contiguous(at::MemoryFormat::ChannelsLast)
                              : moved.contiguous();
  };
  auto conv = [&](const std::string& prefix, bool bias) {
    return Conv{load(prefix + ".weight", 4), bias ? load(prefix + ".bias", 1) : at::Tensor()};
  };
  input_ = conv("encoder.0", true);
  if (input_.weight.size(1) != 3 || input_.weight.size(-1) != 3)
    throw WeightError(fmt::format("{}: encoder.0.weight has shape [{}], expected [C, 3, 3, 3]",
                                  w.source_of("encoder.0.weight"),
                                  fmt::join(input_.weight.sizes(), ", ")));
  const int64_t width = input_.weight.size(0);
  int64_t index = kFirstStageIndex;
  for (int64_t s = 0; s < kStages; ++s) {
    Stage stage;
    stage.pool = load(fmt::format("encoder.{}.conv.weight", index++), 4);
    stage.stride = stage.pool.size(1) / width;
    if (stage.pool.size(0) != width || stage.stride < 1 || stage.pool.size(1) % width != 0)
      throw WeightError(
          fmt::format("encoder.{}.conv.weight has shape [{}]: not a time pool of {} channels",
                      index - 1, fmt::join(stage.pool.sizes(), ", "), width));
    stage.down = load(fmt::format("encoder.{}.weight", index++), 4);
    for (int64_t m = 0; m < kMemBlocksPerStage; ++m, ++index)
      for (int64_t c = 0; c < 3; ++c)
        stage.mem[m][c] = conv(fmt::format("encoder.{}.conv.{}", index, 2 * c), true);
    stages_.push_back(std::move(stage));
  }
  output_ = conv(fmt::format("encoder.{}", index), true);
  int64_t downscale = 1;
  for (const Stage& s : stages_) downscale *= s.stride;
  if (downscale != kTimeDownscale)
    throw WeightError(fmt::format(
        "TAEHV encoder: its time pools take {} frames per latent frame, expected {} (taew2_1)",
        downscale, kTimeDownscale));
}

at::Tensor TaehvEncoder::conv(const Conv& c, const at::Tensor& x, bool relu) const {
  const int64_t pad = c.weight.size(-1) / 2;
  if (relu && cuda_)
    return at::cudnn_convolution_relu(x, c.weight, c.bias, {1, 1}, {pad, pad}, {1, 1}, 1);
  at::Tensor y = at::conv2d(x, c.weight, c.bias, {1, 1}, {pad, pad});
  return relu ? y.relu_() : y;
}

at::Tensor TaehvEncoder::memory_block(const Conv (&convs)[3], at::Tensor& past,
                                      const at::Tensor& x) const {
  // Every frame's previous time step: the remembered frame, then x shifted by one.
  const at::Tensor first = past.defined() ? past : at::zeros_like(x.narrow(0, 0, 1));
  const at::Tensor before = at::cat({first, x.narrow(0, 0, x.size(0) - 1)}, 0);
  past = x.narrow(0, x.size(0) - 1, 1).clone();
  at::Tensor y = conv(convs[0], at::cat({x, before}, 1), true);
  y = conv(convs[1], y, true);
  if (cuda_)  // relu(conv(y) + x) in one call: the skip is the identity (64 -> 64)
    return at::cudnn_convolution_add_relu(y, convs[2].weight, x, 1, convs[2].bias, {1, 1}, {1, 1},
                                          {1, 1}, 1);
  return conv(convs[2], y, false).add_(x).relu_();
}

at::Tensor TaehvEncoder::pass(at::Tensor x, Stream& stream) const {
  if (!stream.started()) stream.past.resize(kStages * kMemBlocksPerStage);
  x = conv(input_, x, true);
  size_t memory = 0;
  for (const Stage& stage : stages_) {
    if (stage.stride > 1) {
      // Frames k*stride + j go to channel block j (the reference's reshape of [T, C] rows).
      std::vector<at::Tensor> stacked;
      for (int64_t j = 0; j < stage.stride; ++j)
        stacked.push_back(x.slice(0, j, x.size(0), stage.stride));
      x = at::cat(stacked, 1);
      if (cuda_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    }
    x = at::conv2d(x, stage.pool);
    x = at::conv2d(x, stage.down, {}, {2, 2}, {1, 1});
    for (const auto& convs : stage.mem) x = memory_block(convs, stream.past[memory++], x);
  }
  return conv(output_, x, false);
}

at::Tensor TaehvEncoder::encode_next(const at::Tensor& frames, Stream& stream,
                                     int64_t frames_per_pass) const {
  if (frames.dim() != 4 || frames.size(0) < 1 || frames.size(1) != 3 || frames.size(2) % 8 != 0 ||
      frames.size(3) % 8 != 0)
    throw ConfigError(fmt::format(
        "TAEHV encode: frames have shape [{}], expected [T, 3, H, W] with H and W multiples of 8",
        fmt::join(frames.sizes(), ", ")));
  if (frames_per_pass < 0 || frames_per_pass % kTimeDownscale != 0)
    throw ConfigError(fmt::format("TAEHV encode: {} frames per pass, expected a multiple of {}",
                                  frames_per_pass, kTimeDownscale));
  at::Tensor x = frames.to(device_, dtype_);
  if (const int64_t rest = x.size(0) % kTimeDownscale; rest != 0)
    x = at::cat({x, x.narrow(0, x.size(0) - 1, 1).expand({kTimeDownscale - rest, -1, -1, -1})});
  if (cuda_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t per_pass = frames_per_pass == 0 ? x.size(0) : frames_per_pass;
  std::vector<at::Tensor> latents;
  for (int64_t begin = 0; begin < x.size(0); begin += per_pass)
    latents.push_back(pass(x.narrow(0, begin, std::min(per_pass, x.size(0) - begin)), stream));
  const at::Tensor out = latents.size() == 1 ? latents[0] : at::cat(latents, 0);
  return out.to(at::kFloat).contiguous();
}

WeightStore load_taehv_encoder_weights(const std::filesystem::path& file) {
  return taehv_weights::read_half(file, "encoder");
}

WeightStore make_random_taehv_encoder_weights(uint64_t seed) {
  taehv_weights::RandomConvs random(
      seed, fmt::format("<random TAEHV encoder weights, seed {}>", seed), 1.2);
  auto conv = [&](const std::string& name, int64_t out, int64_t in, int64_t k, bool bias) {
    random.add(name, out, in, k, bias);
  };
  constexpr int64_t kWidth = 64;
  const int64_t strides[] = {2, 2, 1};
  conv("encoder.0", kWidth, 3, 3, true);
  int64_t index = kFirstStageIndex;
  for (const int64_t stride : strides) {
    conv(fmt::format("encoder.{}.conv", index++), kWidth, kWidth * stride, 1, false);
    conv(fmt::format("encoder.{}", index++), kWidth, kWidth, 3, false);
    for (int64_t m = 0; m < kMemBlocksPerStage; ++m, ++index) {
      conv(fmt::format("encoder.{}.conv.0", index), kWidth, 2 * kWidth, 3, true);
      conv(fmt::format("encoder.{}.conv.2", index), kWidth, kWidth, 3, true);
      conv(fmt::format("encoder.{}.conv.4", index), kWidth, kWidth, 3, true);
    }
  }
  conv(fmt::format("encoder.{}", index), 16, kWidth, 3, true);
  return random.take();
}

}  // namespace longlive
