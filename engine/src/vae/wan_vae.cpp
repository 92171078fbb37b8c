// Wan 2.1 VAE: config, streaming decoder, encoder, loading and random weights.
#include "longlive/wan_vae.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "longlive/error.h"
#include "vae/wan_vae_graph.h"

namespace longlive {

// ---- config -------------------------------------------------------------------------------------

WanVaeConfig WanVaeConfig::wan_2_1() { return WanVaeConfig{}; }

WanVaeConfig WanVaeConfig::tiny() {
  WanVaeConfig c;
  c.dim = 8;
  return c;
}

int64_t WanVaeConfig::spatial_scale() const {
  return int64_t{1} << (static_cast<int64_t>(dim_mult.size()) - 1);
}

int64_t WanVaeConfig::temporal_scale() const {
  return int64_t{1} << std::count(temporal_downsample.begin(), temporal_downsample.end(), true);
}

namespace {

// Walks `prefix`.{0,1,...} and splits it into stages ending at a resample block: per stage the
// output width, the residual block count and whether the resample is temporal.
struct Stage {
  int64_t width = 0;
  int64_t res_blocks = 0;
  bool temporal = false;
};
std::vector<Stage> stages_of(const WeightStore& w, const std::string& prefix) {
  std::vector<Stage> stages(1);
  for (int i = 0;; ++i) {
    const std::string p = fmt::format("{}.{}.", prefix, i);
    if (w.contains(p + "residual.6.weight")) {
      stages.back().width = w.get(p + "residual.6.weight").size(0);
      ++stages.back().res_blocks;
    } else if (w.contains(p + "resample.1.weight")) {
      stages.back().temporal = w.contains(p + "time_conv.weight");
      stages.emplace_back();
    } else if (!w.contains(p + "to_qkv.weight")) {
      break;
    }
  }
  if (stages.back().res_blocks == 0)
    throw WeightError(fmt::format("{}: no residual blocks under '{}' (not a Wan VAE)",
                                  w.describe_sources(), prefix));
  return stages;
}

}  // namespace

WanVaeConfig WanVaeConfig::infer(const WeightStore& w) {
  WanVaeConfig c;
  c.dim_mult.clear();
  c.temporal_downsample.clear();
  if (w.contains("decoder.head.0.gamma")) {
    c.dim = w.get("decoder.head.0.gamma").size(0);
    c.z_dim = w.get("decoder.conv1.weight").size(1);
    const auto stages = stages_of(w, "decoder.upsamples");
    for (auto it = stages.rbegin(); it != stages.rend(); ++it)
      c.dim_mult.push_back(it->width / c.dim);
    c.num_res_blocks = stages.front().res_blocks - 1;  // the decoder has one more per stage
    for (size_t i = stages.size() - 1; i-- > 0;)
      c.temporal_downsample.push_back(stages[i].temporal);
  } else if (w.contains("encoder.conv1.weight")) {
    c.dim = w.get("encoder.conv1.weight").size(0);
    c.z_dim = w.get("encoder.head.2.weight").size(0) / 2;
    const auto stages = stages_of(w, "encoder.downsamples");
    for (const Stage& s : stages) c.dim_mult.push_back(s.width / c.dim);
    c.num_res_blocks = stages.front().res_blocks;
    for (size_t i = 0; i + 1 < stages.size(); ++i)
      c.temporal_downsample.push_back(stages[i].temporal);
  } else {
    throw WeightError(
        fmt::format("{}: neither 'decoder.head.0.gamma' nor 'encoder.conv1.weight' "
                    "found: not a Wan VAE checkpoint",
                    w.describe_sources()));
  }
  return c;
}

const std::vector<float>& wan_vae_latent_mean() {
  static const std::vector<float> mean = {-0.7571, -0.7089, -0.9113, 0.1075,  -0.1745, 0.9653,
                                          -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                          -0.1922, -0.9497, 0.2503,  -0.2921};
  return mean;
}

const std::vector<float>& wan_vae_latent_std() {
  static const std::vector<float> std = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                         2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                         1.6382, 1.1253, 2.8251, 1.9160};
  return std;
}

namespace {

// mean and 1/std as [1, z, 1, 1, 1] (the reference scales by a precomputed 1/std).
std::pair<at::Tensor, at::Tensor> latent_scale(int64_t z_dim, at::Device device,
                                               at::ScalarType dtype) {
  if (z_dim != static_cast<int64_t>(wan_vae_latent_mean().size()))
    throw ConfigError(
        fmt::format("Wan VAE with z_dim {}: latent normalisation constants exist for "
                    "{} channels only",
                    z_dim, wan_vae_latent_mean().size()));
  const auto shape = std::vector<int64_t>{1, z_dim, 1, 1, 1};
  const at::Tensor mean = at::tensor(wan_vae_latent_mean()).to(device, dtype);
  const at::Tensor inv_std = (1.0 / at::tensor(wan_vae_latent_std()).to(device, dtype));
  return {mean.reshape(shape), inv_std.reshape(shape)};
}

void check_latents(const at::Tensor& latents, int64_t z_dim, const char* what) {
  if (latents.dim() != 5 || latents.size(0) != 1 || latents.size(2) != z_dim || latents.size(1) < 1)
    throw ConfigError(fmt::format("{}: latents have shape [{}], expected [1, T, {}, h, w]", what,
                                  fmt::join(latents.sizes(), ", "), z_dim));
}

}  // namespace

// ---- decoder ------------------------------------------------------------------------------------

// Channels-last (N, T, H, W, C) is the layout cuDNN's tensor-core 3-D convolutions run in:
// H200, bf16, 480x832, 139 ms per block vs 145 plain, both with the algorithm search
// (bench/results/2026-12-02-h200-decoders.json). The encoder takes it too (the same kind of
// convolutions; its own timing is `bench --vace`'s).
constexpr DecoderLayout kMeasuredBestLayout = DecoderLayout::channels_last;

namespace {
void use_cudnn_search(const WanVaeOptions& options) {
  if (options.cudnn_search && options.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
}
}  // namespace

struct WanVaeDecoder::Impl {
  std::shared_ptr<const wan_vae::Graph> graph;
  WanVaeConfig config;
  WanVaeDecoderOptions options;
  at::Tensor mean, inv_std;
  wan_vae::StreamState state;
};

WanVaeDecoder::WanVaeDecoder(const WeightStore& weights, const WanVaeDecoderOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = WanVaeConfig::infer(weights);
  impl_->options = options;
  impl_->graph = std::make_shared<const wan_vae::Graph>(
      wan_vae::build_graph(weights, /*is_decoder=*/true, options.device, options.dtype,
                           runs_channels_last(options, kMeasuredBestLayout)));
  std::tie(impl_->mean, impl_->inv_std) =
      latent_scale(impl_->config.z_dim, options.device, options.dtype);
  impl_->state = impl_->graph->new_state();
  use_cudnn_search(options);
}

WanVaeDecoder::WanVaeDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WanVaeDecoder::~WanVaeDecoder() = default;
WanVaeDecoder::WanVaeDecoder(WanVaeDecoder&&) noexcept = default;
WanVaeDecoder& WanVaeDecoder::operator=(WanVaeDecoder&&) noexcept = default;

void WanVaeDecoder::reset() { impl_->state.clear(); }

int64_t WanVaeDecoder::frames_for(int64_t latent_frames, bool first) const {
  const int64_t ts = impl_->config.temporal_scale();
  return first ? 1 + ts * (latent_frames - 1) : ts * latent_frames;
}

namespace {

void restore_state(wan_vae::StreamState& state, at::Device device) {
  // State parked in host memory (export) comes back to the compute device.
  for (auto& slot : state.slots)
    if (slot.frames.defined() && slot.frames.device() != device)
      slot.frames = slot.frames.to(device, /*non_blocking=*/true);
}

// [1, 3, N, H, W] -> [N, 3, H, W] float32 in [-1, 1].
at::Tensor to_pixels(const at::Tensor& video) {
  return video[0].transpose(0, 1).to(at::kFloat).clamp_(-1, 1).contiguous();
}

}  // namespace

at::Tensor WanVaeDecoder::decode_trunk(const at::Tensor& block_latents) {
  check_latents(block_latents, impl_->config.z_dim, "Wan VAE decode");
  const auto& o = impl_->options;
  restore_state(impl_->state, o.device);
  // [1, T, z, h, w] -> [1, z, T, h, w], de-normalised as `z / (1/std) + mean`.
  const at::Tensor z =
      (block_latents.to(o.device, o.dtype).permute({0, 2, 1, 3, 4}) / impl_->inv_std)
          .add_(impl_->mean);
  return impl_->graph->trunk(z, impl_->state);
}

at::Tensor WanVaeDecoder::decode_branch(const at::Tensor& features) {
  restore_state(impl_->state, impl_->options.device);
  return to_pixels(impl_->graph->branch(features, impl_->state));
}

at::Tensor WanVaeDecoder::decode_pixels(const at::Tensor& block_latents) {
  check_latents(block_latents, impl_->config.z_dim, "Wan VAE decode");
  const int64_t t = block_latents.size(1);
  const int64_t per_pass = impl_->options.latent_frames_per_pass;
  const int64_t pass = per_pass > 0 ? per_pass : t;
  std::vector<at::Tensor> outs;
  for (int64_t begin = 0; begin < t; begin += pass)
    outs.push_back(
        decode_branch(decode_trunk(block_latents.narrow(1, begin, std::min(pass, t - begin)))));
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

at::Tensor WanVaeDecoder::decode(const at::Tensor& block_latents) {
  return decode_pixels(block_latents).mul_(0.5).add_(0.5).clamp_(0, 1);
}

WanVaeDecoder WanVaeDecoder::fork() const {
  auto impl = std::make_unique<Impl>(Impl{impl_->graph, impl_->config, impl_->options, impl_->mean,
                                          impl_->inv_std, impl_->graph->new_state()});
  return WanVaeDecoder(std::move(impl));
}

void WanVaeDecoder::move_state(at::Device device, bool pin_memory) {
  for (auto& slot : impl_->state.slots) {
    if (!slot.frames.defined() || slot.frames.device() == device) continue;
    at::Tensor moved = slot.frames.to(device, /*non_blocking=*/false);
    if (pin_memory && device.is_cpu() && !slot.frames.device().is_cpu()) moved = moved.pin_memory();
    slot.frames = moved;
  }
}

int64_t WanVaeDecoder::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& slot : impl_->state.slots)
    if (slot.frames.defined()) bytes += static_cast<int64_t>(slot.frames.nbytes());
  return bytes;
}

std::vector<at::Tensor> WanVaeDecoder::feature_cache() const {
  std::vector<at::Tensor> cache;
  for (const auto& slot : impl_->state.slots) cache.push_back(slot.frames);
  return cache;
}

const WanVaeConfig& WanVaeDecoder::config() const { return impl_->config; }
const WanVaeDecoderOptions& WanVaeDecoder::options() const { return impl_->options; }

// ---- encoder ------------------------------------------------------------------------------------

struct WanVaeEncoder::Impl {
  std::shared_ptr<const wan_vae::Graph> graph;  // shared by share()'s encoders
  WanVaeConfig config;
  WanVaeEncoderOptions options;
  at::Tensor mean, inv_std;
};

WanVaeEncoder::WanVaeEncoder(const WeightStore& weights, const WanVaeEncoderOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->graph = std::make_shared<const wan_vae::Graph>(
      wan_vae::build_graph(weights, /*is_decoder=*/false, options.device, options.dtype,
                           runs_channels_last(options, kMeasuredBestLayout)));
  impl_->config = WanVaeConfig::infer(weights);
  impl_->options = options;
  std::tie(impl_->mean, impl_->inv_std) =
      latent_scale(impl_->config.z_dim, options.device, options.dtype);
  use_cudnn_search(options);
}

WanVaeEncoder::WanVaeEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WanVaeEncoder WanVaeEncoder::share() const { return WanVaeEncoder(std::make_unique<Impl>(*impl_)); }

WanVaeEncoder::~WanVaeEncoder() = default;
WanVaeEncoder::WanVaeEncoder(WanVaeEncoder&&) noexcept = default;
WanVaeEncoder& WanVaeEncoder::operator=(WanVaeEncoder&&) noexcept = default;

const WanVaeConfig& WanVaeEncoder::config() const { return impl_->config; }

at::Device WanVaeEncoder::device() const { return impl_->options.device; }

namespace {
// Frames of one encoder pass over `frames` frames (after a stream's first frame), groups of `ts`:
// see WanVaeEncoderOptions::groups_per_pass.
int64_t pass_frames(int64_t asked_groups, const WanVaeEncoderOptions& options, int64_t ts,
                    int64_t frames) {
  int64_t groups = asked_groups;
  if (groups <= 0) {
    const char* env = std::getenv("LONGLIVE_ENCODE_GROUPS_PER_PASS");
    groups = env ? std::atoll(env) : options.groups_per_pass;
  }
  if (groups <= 0) return options.device.is_cuda() ? std::max<int64_t>(frames, ts) : ts;
  return ts * groups;
}
}  // namespace

at::Tensor WanVaeEncoder::encode(const at::Tensor& video, int64_t groups_per_pass) {
  const int64_t ts = impl_->config.temporal_scale();
  const int64_t scale = impl_->config.spatial_scale();
  if (video.dim() != 5 || video.size(0) != 1 || video.size(2) != 3 ||
      (video.size(1) - 1) % ts != 0 || video.size(3) % scale != 0 || video.size(4) % scale != 0)
    throw ConfigError(
        fmt::format("Wan VAE encode: video has shape [{}], expected [1, 1 + {}k, 3, "
                    "H, W] with H and W multiples of {}",
                    fmt::join(video.sizes(), ", "), ts, scale));
  const auto& o = impl_->options;
  const at::Tensor x = video.to(o.device, o.dtype).permute({0, 2, 1, 3, 4});
  wan_vae::StreamState state = impl_->graph->new_state();
  std::vector<at::Tensor> outs;
  const int64_t t = x.size(2);
  const int64_t pass = pass_frames(groups_per_pass, o, ts, t - 1);
  outs.push_back(impl_->graph->forward(x.narrow(2, 0, 1), state));
  for (int64_t begin = 1; begin < t; begin += pass)
    outs.push_back(impl_->graph->forward(x.narrow(2, begin, std::min(pass, t - begin)), state));
  const at::Tensor moments = outs.size() == 1 ? outs[0] : at::cat(outs, 2);
  const at::Tensor mu = moments.narrow(1, 0, impl_->config.z_dim);
  return ((mu - impl_->mean) * impl_->inv_std).permute({0, 2, 1, 3, 4}).to(at::kFloat).contiguous();
}

struct WanVaeEncoder::Stream::Impl {
  wan_vae::StreamState state;
  bool started = false;
};

WanVaeEncoder::Stream::Stream() : impl_(std::make_unique<Impl>()) {}
WanVaeEncoder::Stream::~Stream() = default;
WanVaeEncoder::Stream::Stream(Stream&&) noexcept = default;
WanVaeEncoder::Stream& WanVaeEncoder::Stream::operator=(Stream&&) noexcept = default;
void WanVaeEncoder::Stream::reset() { impl_ = std::make_unique<Impl>(); }
bool WanVaeEncoder::Stream::started() const { return impl_->started; }
void WanVaeEncoder::Stream::track_changes(bool on) {
  impl_->state.track_changes = on;
  impl_->state.changed = false;
}
bool WanVaeEncoder::Stream::changed() const { return impl_->state.changed; }

at::Tensor WanVaeEncoder::encode_next(const at::Tensor& video, Stream& stream,
                                      int64_t groups_per_pass) {
  const int64_t ts = impl_->config.temporal_scale();
  const int64_t scale = impl_->config.spatial_scale();
  Stream::Impl& s = *stream.impl_;
  const int64_t lead = s.started ? 0 : 1;  // a stream's first frame is encoded alone
  if (video.dim() != 5 || video.size(0) != 1 || video.size(2) != 3 || video.size(1) - lead < 0 ||
      (video.size(1) - lead) % ts != 0 || video.size(1) == 0 || video.size(3) % scale != 0 ||
      video.size(4) % scale != 0)
    throw ConfigError(fmt::format(
        "Wan VAE streaming encode: video has shape [{}], expected [1, {}{}k, 3, H, W] with H "
        "and W multiples of {} ({} call of the stream)",
        fmt::join(video.sizes(), ", "), lead ? "1 + " : "", ts, scale,
        s.started ? "a later" : "the first"));
  const auto& o = impl_->options;
  const at::Tensor x = video.to(o.device, o.dtype).permute({0, 2, 1, 3, 4});
  if (!s.started) {
    const bool tracking = s.state.track_changes;  // set on the empty state before the start
    s.state = impl_->graph->new_state();
    s.started = true;
    s.state.track_changes = tracking;
    s.state.changed = tracking;  // starting is a change
  }
  std::vector<at::Tensor> outs;
  const int64_t t = x.size(2);
  const int64_t pass = pass_frames(groups_per_pass, o, ts, t - lead);
  if (lead) outs.push_back(impl_->graph->forward(x.narrow(2, 0, 1), s.state));
  for (int64_t begin = lead; begin < t; begin += pass)
    outs.push_back(impl_->graph->forward(x.narrow(2, begin, std::min(pass, t - begin)), s.state));
  const at::Tensor moments = outs.size() == 1 ? outs[0] : at::cat(outs, 2);
  const at::Tensor mu = moments.narrow(1, 0, impl_->config.z_dim);
  return ((mu - impl_->mean) * impl_->inv_std).permute({0, 2, 1, 3, 4}).to(at::kFloat).contiguous();
}

// ---- files --------------------------------------------------------------------------------------

WeightStore load_wan_vae_weights(const std::filesystem::path& file) {
  const WeightStore all = WeightStore::open(file);
  WeightStore vae;
  for (const auto& name : all.names()) {
    for (const char* prefix : {"encoder.", "decoder.", "conv1.", "conv2."}) {
      if (name.rfind(prefix, 0) == 0) {
        vae.add(name, all.get(name), all.source_of(name));
        break;
      }
    }
  }
  vae.add_metadata(all.metadata());
  if (!vae.contains("decoder.conv1.weight") && !vae.contains("encoder.conv1.weight"))
    throw WeightError(
        fmt::format("'{}' holds no Wan VAE tensors (expected 'decoder.conv1.weight' "
                    "or 'encoder.conv1.weight', as in Wan2.1_VAE.pth)",
                    file.string()));
  return vae;
}

WeightStore make_random_wan_vae_weights(const WanVaeConfig& config, uint64_t seed,
                                        bool with_encoder) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto opts = at::TensorOptions(at::kFloat);
  WeightStore w;
  const std::string origin = fmt::format("<random Wan VAE weights, seed {}>", seed);
  auto randn = [&](at::IntArrayRef shape) { return at::randn(shape, gen, opts); };
  auto conv = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    w.add(name + ".weight", randn(shape) * (0.75 / std::sqrt(double(fan_in))), origin);
    w.add(name + ".bias", randn({shape[0]}) * 0.05, origin);
  };
  auto conv3 = [&](const std::string& name, int64_t out, int64_t in, int64_t k) {
    conv(name, {out, in, k, k, k});
  };
  auto gamma = [&](const std::string& name, std::vector<int64_t> shape) {
    w.add(name, randn(shape) * 0.1 + 1.0, origin);
  };
  auto residual = [&](const std::string& p, int64_t in, int64_t out) {
    gamma(p + "residual.0.gamma", {in, 1, 1, 1});
    conv3(p + "residual.2", out, in, 3);
    gamma(p + "residual.3.gamma", {out, 1, 1, 1});
    conv3(p + "residual.6", out, out, 3);
    if (in != out) conv3(p + "shortcut", out, in, 1);
  };
  auto attention = [&](const std::string& p, int64_t c) {
    gamma(p + "norm.gamma", {c, 1, 1});
    conv(p + "to_qkv", {3 * c, c, 1, 1});
    conv(p + "proj", {c, c, 1, 1});
  };
  auto middle = [&](const std::string& p, int64_t c) {
    residual(p + "0.", c, c);
    attention(p + "1.", c);
    residual(p + "2.", c, c);
  };
  const int64_t z = config.z_dim;
  const auto& mult = config.dim_mult;
  const size_t stages = mult.size();
  if (stages < 1 || config.temporal_downsample.size() + 1 != stages)
    throw ConfigError(
        fmt::format("Wan VAE config: {} dim_mult entries need {} temporal_downsample "
                    "flags, got {}",
                    stages, stages - 1, config.temporal_downsample.size()));
  if (with_encoder) {
    std::vector<int64_t> dims = {config.dim};
    for (int64_t m : mult) dims.push_back(config.dim * m);
    conv3("encoder.conv1", dims[0], 3, 3);
    int index = 0;
    for (size_t i = 0; i < stages; ++i) {
      int64_t in = dims[i];
      for (int64_t r = 0; r < config.num_res_blocks; ++r, in = dims[i + 1])
        residual(fmt::format("encoder.downsamples.{}.", index++), in, dims[i + 1]);
      if (i + 1 < stages) {
        const std::string p = fmt::format("encoder.downsamples.{}.", index++);
        conv(p + "resample.1", {dims[i + 1], dims[i + 1], 3, 3});
        if (config.temporal_downsample[i])
          conv(p + "time_conv", {dims[i + 1], dims[i + 1], 3, 1, 1});
      }
    }
    middle("encoder.middle.", dims.back());
    gamma("encoder.head.0.gamma", {dims.back(), 1, 1, 1});
    conv3("encoder.head.2", 2 * z, dims.back(), 3);
    conv3("conv1", 2 * z, 2 * z, 1);
  }
  std::vector<int64_t> dims = {config.dim * mult.back()};
  for (auto it = mult.rbegin(); it != mult.rend(); ++it) dims.push_back(config.dim * *it);
  conv3("conv2", z, z, 1);
  conv3("decoder.conv1", dims[0], z, 3);
  middle("decoder.middle.", dims[0]);
  int index = 0;
  for (size_t i = 0; i < stages; ++i) {
    int64_t in = i == 0 ? dims[0] : dims[i] / 2;  // the previous resample halves the width
    for (int64_t r = 0; r <= config.num_res_blocks; ++r, in = dims[i + 1])
      residual(fmt::format("decoder.upsamples.{}.", index++), in, dims[i + 1]);
    if (i + 1 < stages) {
      const std::string p = fmt::format("decoder.upsamples.{}.", index++);
      const int64_t c = dims[i + 1];
      conv(p + "resample.1", {c / 2, c, 3, 3});
      if (config.temporal_downsample[stages - 2 - i]) conv(p + "time_conv", {2 * c, c, 3, 1, 1});
    }
  }
  gamma("decoder.head.0.gamma", {dims.back(), 1, 1, 1});
  conv3("decoder.head.2", 3, dims.back(), 3);
  return w;
}

}  // namespace longlive
