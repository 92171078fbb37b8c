// TAEHV decoder (Wan 2.1 variant). Layer layout of the reference `decoder` Sequential:
//   0 Clamp (tanh(x/3)*3), 1 conv3x3 + ReLU, then three stages of
//   [3 MemBlocks, nearest 2x upsample, TGrow (1x1 conv, channels -> stride*channels, split into
//   stride frames), conv3x3 without bias], then ReLU and the output conv3x3 (index 22).
// A MemBlock sees its input and the previous time step's input (zeros at the start of a video);
// the streaming state is therefore the last frame seen by each MemBlock.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <variant>
#include <vector>

#include "longlive/error.h"
#include "longlive/taehv.h"
#include "taehv_weights.h"

namespace longlive {
namespace {

struct Conv {
  at::Tensor weight, bias;  // bias may be undefined
  int64_t pad() const { return weight.size(-1) / 2; }
  at::Tensor operator()(const at::Tensor& x) const {
    return at::conv2d(x, weight, bias, {1, 1}, {pad(), pad()});
  }
};

struct MemBlock {
  Conv c0, c2, c4;
  at::Tensor past;  // last input frame of the previous decode() call, [1, C, H, W]
};

struct TGrow {
  at::Tensor weight;
  int64_t stride = 1;
};

constexpr int64_t kStages = 3;
constexpr int64_t kMemBlocksPerStage = 3;
// H200, fp16, 480x832: channels-last 10.4 ms per block vs 12.5 plain; with the fused
// conv + ReLU calls 8.2 vs 11.2 (bench/results/2026-12-02-h200-decoders.json).
constexpr DecoderLayout kMeasuredBestLayout = DecoderLayout::channels_last;

class TaehvDecoder final : public StreamingDecoder {
 public:
  TaehvDecoder(const WeightStore& w, const DecoderOptions& options)
      : options_(options),
        channels_last_(runs_channels_last(options, kMeasuredBestLayout)),
        fused_conv_(options.fused_conv && options.device.is_cuda()) {
    auto load = [&](const std::string& name) {
      const at::Tensor t = w.get(name).to(options.device, options.dtype);
      // Conv weights in the activations' layout (else cuDNN converts them on every call).
      return channels_last_ && t.dim() == 4 ? t.contiguous(at::MemoryFormat::ChannelsLast)
                                            : t.contiguous();
    };
    auto conv = [&](const std::string& prefix, bool bias) {
      Conv c{load(prefix + ".weight"), bias ? load(prefix + ".bias") : at::Tensor()};
      return c;
    };
    input_ = conv("decoder.1", true);
    if (input_.weight.dim() != 4 || input_.weight.size(-1) != 3)
      throw WeightError(fmt::format("{}: decoder.1.weight should be a 3x3 conv",
                                    w.source_of("decoder.1.weight")));
    latent_channels_ = input_.weight.size(1);
    int64_t index = 3;
    for (int64_t stage = 0; stage < kStages; ++stage) {
      for (int64_t m = 0; m < kMemBlocksPerStage; ++m, ++index) {
        const std::string p = fmt::format("decoder.{}.conv.", index);
        memblocks_.push_back({conv(p + "0", true), conv(p + "2", true), conv(p + "4", true), {}});
      }
      ++index;  // upsample
      TGrow grow{load(fmt::format("decoder.{}.conv.weight", index)), 1};
      grow.stride = grow.weight.size(0) / grow.weight.size(1);
      if (grow.stride < 1 || grow.weight.size(0) % grow.weight.size(1) != 0)
        throw WeightError(fmt::format("decoder.{}.conv.weight has shape [{}, {}, ...]: not a TGrow",
                                      index, grow.weight.size(0), grow.weight.size(1)));
      time_upscale_ *= grow.stride;
      grows_.push_back(grow);
      ++index;
      stage_convs_.push_back(conv(fmt::format("decoder.{}", index), false));
      ++index;
    }
    output_ = conv(fmt::format("decoder.{}", index + 1), true);  // index is the ReLU
  }

  void reset() override {
    for (auto& m : memblocks_) m.past = at::Tensor();
    first_ = true;
  }

  int64_t frames_for(int64_t latent_frames, bool first) const override {
    return latent_frames * time_upscale_ - (first ? time_upscale_ - 1 : 0);
  }

  at::Tensor decode(const at::Tensor& block_latents) override {
    if (block_latents.dim() != 5 || block_latents.size(0) != 1 ||
        block_latents.size(2) != latent_channels_) {
      throw ConfigError(
          fmt::format("TAEHV decode: latents have shape [{}], expected [1, T, {}, h, w]",
                      fmt::join(block_latents.sizes(), ", "), latent_channels_));
    }
    // Frames are the batch dimension: [T, C, h, w].
    at::Tensor x = block_latents[0].to(options_.device, options_.dtype);
    if (channels_last_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    x = at::tanh(x / 3) * 3;
    x = conv_relu(input_, x);
    size_t mem = 0;
    for (int64_t stage = 0; stage < kStages; ++stage) {
      for (int64_t m = 0; m < kMemBlocksPerStage; ++m) x = apply_memblock(memblocks_[mem++], x);
      // The reference upsamples, then applies TGrow; a 1x1 conv commutes with a nearest
      // upsample, so TGrow runs at the low resolution (a quarter of the work, same values).
      x = grow_frames(grows_[stage], x);
      x = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
      x = stage_convs_[stage](x);
    }
    x = output_(at::relu(x)).clamp(0, 1).to(at::kFloat).contiguous();
    if (first_) {
      x = x.narrow(0, time_upscale_ - 1, x.size(0) - (time_upscale_ - 1));
      first_ = false;
    }
    return x;
  }

 private:
  at::Tensor apply_memblock(MemBlock& m, const at::Tensor& x) const {
    // Previous time step's input for every frame: the cached last frame, then x shifted by one.
    const at::Tensor first_past = m.past.defined() ? m.past : at::zeros_like(x.narrow(0, 0, 1));
    const at::Tensor past = at::cat({first_past, x.narrow(0, 0, x.size(0) - 1)}, 0);
    m.past = x.narrow(0, x.size(0) - 1, 1).clone();
    at::Tensor y = conv_relu(m.c0, at::cat({x, past}, 1));
    y = conv_relu(m.c2, y);
    return conv_add_relu(m.c4, y, x);  // n_in == n_out: identity skip
  }

  // relu(conv(x)).
  at::Tensor conv_relu(const Conv& c, const at::Tensor& x) const {
    if (!fused_conv_) return c(x).relu_();
    return at::cudnn_convolution_relu(x, c.weight, c.bias, {1, 1}, {c.pad(), c.pad()}, {1, 1}, 1);
  }
  // relu(conv(x) + skip).
  at::Tensor conv_add_relu(const Conv& c, const at::Tensor& x, const at::Tensor& skip) const {
    if (!fused_conv_) return c(x).add_(skip).relu_();
    return at::cudnn_convolution_add_relu(x, c.weight, skip, 1, c.bias, {1, 1}, {c.pad(), c.pad()},
                                          {1, 1}, 1);
  }

  // TGrow: a 1x1 conv to stride*C channels, split into `stride` consecutive frames per frame.
  at::Tensor grow_frames(const TGrow& grow, const at::Tensor& x) const {
    const int64_t t = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const at::Tensor y = at::conv2d(x, grow.weight);  // [T, stride*C, H, W]
    if (grow.stride == 1) return y;
    if (!channels_last_) return y.reshape({t * grow.stride, c, h, w});  // a view
    // Channels-last: frame t*stride + s takes channels [s*C, (s+1)*C) of frame t (one copy).
    at::Tensor out = at::empty({t * grow.stride, c, h, w},
                               y.options().memory_format(at::MemoryFormat::ChannelsLast));
    out.view({t, grow.stride, c, h, w}).copy_(y.view({t, grow.stride, c, h, w}));
    return out;
  }

  DecoderOptions options_;
  bool channels_last_ = false;
  bool fused_conv_ = false;
  Conv input_, output_;
  std::vector<MemBlock> memblocks_;
  std::vector<TGrow> grows_;
  std::vector<Conv> stage_convs_;
  int64_t latent_channels_ = 16;
  int64_t time_upscale_ = 1;
  bool first_ = true;
};

}  // namespace

std::unique_ptr<StreamingDecoder> make_taehv_decoder(const WeightStore& weights,
                                                     const DecoderOptions& options) {
  return std::make_unique<TaehvDecoder>(weights, options);
}

namespace taehv_weights {

WeightStore read_half(const std::filesystem::path& file, const std::string& half) {
  WeightStore all = WeightStore::open(file);
  WeightStore out;
  const std::string prefix = half + ".";
  for (const auto& name : all.names())
    if (name.rfind(prefix, 0) == 0) out.add(name, all.get(name), all.source_of(name));
  if (out.size() == 0)
    throw WeightError(fmt::format("'{}' holds no TAEHV {}.* tensors", file.string(), half));
  return out;
}

RandomConvs::RandomConvs(uint64_t seed, std::string origin, double gain)
    : generator_(at::detail::createCPUGenerator(seed)), origin_(std::move(origin)), gain_(gain) {}

void RandomConvs::add(const std::string& name, int64_t out, int64_t in, int64_t kernel, bool bias) {
  const auto opts = at::TensorOptions(at::kFloat);
  weights_.add(name + ".weight",
               (gain_ * at::randn({out, in, kernel, kernel}, generator_, opts) /
                std::sqrt(double(in * kernel * kernel)))
                   .to(at::kHalf),
               origin_);
  if (bias)
    weights_.add(name + ".bias", (0.05 * at::randn({out}, generator_, opts)).to(at::kHalf),
                 origin_);
}

}  // namespace taehv_weights

WeightStore load_taehv_weights(const std::filesystem::path& file) {
  return taehv_weights::read_half(file, "decoder");
}

WeightStore make_random_taehv_weights(uint64_t seed) {
  taehv_weights::RandomConvs random(seed, fmt::format("<random TAEHV weights, seed {}>", seed),
                                    0.95);
  auto conv = [&](const std::string& name, int64_t out, int64_t in, int64_t k, bool bias) {
    random.add(name, out, in, k, bias);
  };
  const int64_t widths[] = {256, 128, 64, 64};
  const int64_t grow[] = {1, 2, 2};
  conv("decoder.1", widths[0], 16, 3, true);
  int64_t index = 3;
  for (int stage = 0; stage < 3; ++stage) {
    for (int m = 0; m < 3; ++m, ++index) {
      const std::string p = fmt::format("decoder.{}.conv.", index);
      conv(p + "0", widths[stage], 2 * widths[stage], 3, true);
      conv(p + "2", widths[stage], widths[stage], 3, true);
      conv(p + "4", widths[stage], widths[stage], 3, true);
    }
    ++index;
    conv(fmt::format("decoder.{}.conv", index++), widths[stage] * grow[stage], widths[stage], 1,
         false);
    conv(fmt::format("decoder.{}", index++), widths[stage + 1], widths[stage], 3, false);
  }
  conv(fmt::format("decoder.{}", index + 1), 3, widths[3], 3, true);
  return random.take();
}

}  // namespace longlive
