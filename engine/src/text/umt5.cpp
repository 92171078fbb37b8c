#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>

#include "longlive/error.h"
#include "longlive/text_encoder.h"

namespace longlive {

UMT5Config UMT5Config::infer(const WeightStore& w) {
  UMT5Config c;
  const at::Tensor& emb = w.get("token_embedding.weight");
  c.vocab = emb.size(0);
  c.dim = emb.size(1);
  c.dim_attn = w.get("blocks.0.attn.q.weight").size(0);
  c.dim_ffn = w.get("blocks.0.ffn.fc1.weight").size(0);
  const at::Tensor& pos = w.get("blocks.0.pos_embedding.embedding.weight");
  c.num_buckets = pos.size(0);
  c.num_heads = pos.size(1);
  int64_t layers = 0;
  while (w.contains(fmt::format("blocks.{}.attn.q.weight", layers))) ++layers;
  c.num_layers = layers;
  return c;
}

WeightStore make_random_umt5_weights(const UMT5Config& c, uint64_t seed, at::ScalarType dtype,
                                     at::Device device) {
  // Drawn on the target device: the real size (5.7 B parameters) is too slow to draw on a CPU.
  at::Generator gen = device.is_cpu() ? at::detail::createCPUGenerator(seed)
                                      : at::globalContext().defaultGenerator(device).clone();
  gen.set_current_seed(seed);
  const auto opts = at::TensorOptions(at::kFloat).device(device);
  WeightStore w;
  const std::string origin = fmt::format("<random umT5 weights, seed {}>", seed);
  auto add = [&](const std::string& n, const at::Tensor& t) { w.add(n, t.to(dtype), origin); };
  auto mat = [&](const std::string& n, int64_t out, int64_t in) {
    add(n, at::randn({out, in}, gen, opts) / std::sqrt(static_cast<double>(in)));
  };
  auto gain = [&](const std::string& n, int64_t d) { add(n, 1 + 0.1 * at::randn({d}, gen, opts)); };
  add("token_embedding.weight", at::randn({c.vocab, c.dim}, gen, opts));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    gain(p + "norm1.weight", c.dim);
    for (const char* n : {"q", "k", "v"}) mat(p + "attn." + n + ".weight", c.dim_attn, c.dim);
    mat(p + "attn.o.weight", c.dim, c.dim_attn);
    gain(p + "norm2.weight", c.dim);
    mat(p + "ffn.gate.0.weight", c.dim_ffn, c.dim);
    mat(p + "ffn.fc1.weight", c.dim_ffn, c.dim);
    mat(p + "ffn.fc2.weight", c.dim, c.dim_ffn);
    add(p + "pos_embedding.embedding.weight",
        0.5 * at::randn({c.num_buckets, c.num_heads}, gen, opts));
  }
  gain("norm.weight", c.dim);
  return w;
}

namespace {

// T5 RMS norm: no mean subtraction, computed in float32.
at::Tensor t5_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  if (weight.scalar_type() != at::kFloat) y = y.to(weight.scalar_type());
  return weight * y;
}

at::Tensor project(const at::Tensor& x, const at::Tensor& w) {
  return at::linear(x.to(w.scalar_type()), w);
}

}  // namespace

UMT5Encoder::UMT5Encoder(const WeightStore& w, const UMT5Config& c, at::Device device,
                         at::ScalarType dtype)
    : config_(c), device_(device), dtype_(dtype) {
  if (c.dim_attn % c.num_heads != 0)
    throw ConfigError(
        fmt::format("umT5: dim_attn {} not divisible by {} heads", c.dim_attn, c.num_heads));
  auto load = [&](const std::string& n, at::IntArrayRef shape) {
    return w.require(n, shape).to(device, dtype).contiguous();
  };
  embedding_ = load("token_embedding.weight", {c.vocab, c.dim});
  final_norm_ = load("norm.weight", {c.dim});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    Layer l;
    l.norm1 = load(p + "norm1.weight", {c.dim});
    l.q = load(p + "attn.q.weight", {c.dim_attn, c.dim});
    l.k = load(p + "attn.k.weight", {c.dim_attn, c.dim});
    l.v = load(p + "attn.v.weight", {c.dim_attn, c.dim});
    l.o = load(p + "attn.o.weight", {c.dim, c.dim_attn});
    l.norm2 = load(p + "norm2.weight", {c.dim});
    l.gate = load(p + "ffn.gate.0.weight", {c.dim_ffn, c.dim});
    l.fc1 = load(p + "ffn.fc1.weight", {c.dim_ffn, c.dim});
    l.fc2 = load(p + "ffn.fc2.weight", {c.dim, c.dim_ffn});
    l.pos = w.require(p + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads})
                .to(device, at::kFloat);
    layers_.push_back(std::move(l));
  }
}

void UMT5Encoder::move_to(at::Device device, at::ScalarType dtype) {
  if (device == device_ && dtype == dtype_) return;
  // One tensor at a time: the peak is one matrix in both places, not the encoder twice.
  auto move = [&](at::Tensor& t) { t = t.to(device, dtype).contiguous(); };
  move(embedding_);
  move(final_norm_);
  for (Layer& l : layers_) {
    for (at::Tensor* t : {&l.norm1, &l.q, &l.k, &l.v, &l.o, &l.norm2, &l.gate, &l.fc1, &l.fc2})
      move(*t);
    l.pos = l.pos.to(device, at::kFloat);  // the bias table stays float32, as at load
  }
  device_ = device;
  dtype_ = dtype;
}

at::Tensor UMT5Encoder::relative_buckets(int64_t length) const {
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device_);
  const at::Tensor pos = at::arange(length, opts);
  at::Tensor rel = pos.unsqueeze(0) - pos.unsqueeze(1);  // key - query
  // Bidirectional: half the buckets for keys after the query.
  const int64_t half = config_.num_buckets / 2;
  at::Tensor buckets = (rel > 0).to(at::kLong) * half;
  rel = rel.abs();
  const int64_t max_exact = half / 2;
  at::Tensor large = max_exact + (at::log(rel.to(at::kFloat) / static_cast<double>(max_exact)) /
                                  std::log(static_cast<double>(config_.max_distance) / max_exact) *
                                  static_cast<double>(half - max_exact))
                                     .to(at::kLong);
  large = at::minimum(large, at::full_like(large, half - 1));
  return buckets + at::where(rel < max_exact, rel, large);
}

at::Tensor UMT5Encoder::position_bias(int64_t layer, int64_t length) const {
  const at::Tensor buckets = relative_buckets(length);
  return at::embedding(layers_[layer].pos, buckets).permute({2, 0, 1}).unsqueeze(0).contiguous();
}

at::Tensor UMT5Encoder::forward(const at::Tensor& ids, const at::Tensor& mask) const {
  if (ids.dim() != 2 || mask.sizes() != ids.sizes())
    throw ConfigError(fmt::format("umT5: ids [{}] and mask [{}] must both be [batch, length]",
                                  fmt::join(ids.sizes(), ", "), fmt::join(mask.sizes(), ", ")));
  const int64_t b = ids.size(0), len = ids.size(1);
  const int64_t n = config_.num_heads, hd = config_.dim_attn / n;
  const at::Tensor ids_d = ids.to(device_, at::kLong);
  if (ids_d.numel() > 0 &&
      (ids_d.min().item<int64_t>() < 0 || ids_d.max().item<int64_t>() >= config_.vocab))
    throw ConfigError(fmt::format("umT5: token ids must lie in [0, {})", config_.vocab));
  // Padded keys get the dtype's minimum as bias, like the reference.
  const at::Tensor key_mask = mask.to(device_).view({b, 1, 1, len}) == 0;
  at::Tensor x = at::embedding(embedding_, ids_d);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const at::Tensor h = t5_norm(x, l.norm1, config_.eps);
    const at::Tensor q = project(h, l.q).view({b, len, n, hd}).transpose(1, 2);
    const at::Tensor k = project(h, l.k).view({b, len, n, hd}).transpose(1, 2);
    const at::Tensor v = project(h, l.v).view({b, len, n, hd}).transpose(1, 2);
    // Scores and bias in float32 whatever the weights' dtype; unscaled (T5 folds the scale into
    // its weights).
    const at::Tensor bias = position_bias(static_cast<int64_t>(i), len)
                                .expand({b, n, len, len})
                                .masked_fill(key_mask, std::numeric_limits<float>::lowest());
    const at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).to(at::kFloat) + bias;
    const at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
    const at::Tensor attended = at::matmul(probs, v).transpose(1, 2).reshape({b, len, n * hd});
    x = x + project(attended, l.o);
    const at::Tensor h2 = t5_norm(x, l.norm2, config_.eps);
    const at::Tensor gated = project(h2, l.fc1) * at::gelu(project(h2, l.gate), "tanh");
    x = x + project(gated, l.fc2);
  }
  return t5_norm(x, final_norm_, config_.eps).to(at::kFloat);
}

}  // namespace longlive
