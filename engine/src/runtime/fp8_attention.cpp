#include "runtime/fp8_attention.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "longlive/error.h"
#include "longlive/log.h"

#ifdef LONGLIVE_WITH_CUDNN_FE
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cudnn/Handle.h>
#include <cudnn_frontend.h>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>
#endif

namespace longlive::fp8_attention {

at::Tensor quantize(const at::Tensor& x) {
  return x.clamp(-kE4M3Max, kE4M3Max).to(at::kFloat8_e4m3fn);
}

#ifdef LONGLIVE_WITH_CUDNN_FE
namespace {

namespace fe = cudnn_frontend;

enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kDescaleQ,
  kDescaleK,
  kDescaleV,
  kDescaleS,
  kScaleS,
  kScaleO,
  kAmaxS,
  kAmaxO,
};

struct Key {
  std::vector<int64_t> q_sizes, q_strides, k_sizes, k_strides, v_strides;
  int device = 0;
  auto operator<=>(const Key&) const = default;
};

// Scale inputs and the amax outputs nobody reads: per device, alive for the process (captured
// CUDA graphs hold their addresses).
struct Scalars {
  at::Tensor one, scale_s, descale_s, amax_s, amax_o;
};

void check(fe::error_t status, const char* step) {
  if (!status.is_good()) {
    throw Error(fmt::format("cuDNN FP8 attention: {} failed: {}", step, status.get_message()));
  }
}

std::shared_ptr<fe::graph::Graph> build(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, cudnnHandle_t handle) {
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe::DataType_t::FP8_E4M3)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto tensor = [&](const char* name, int64_t uid, const at::Tensor& t) {
    return graph->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_uid(uid)
                             .set_dim(t.sizes().vec())
                             .set_stride(t.strides().vec())
                             .set_data_type(fe::DataType_t::FP8_E4M3));
  };
  auto scalar = [&](const char* name, int64_t uid) {
    return graph->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_uid(uid)
                             .set_dim({1, 1, 1, 1})
                             .set_stride({1, 1, 1, 1})
                             .set_data_type(fe::DataType_t::FLOAT));
  };
  const auto q_t = tensor("q", kQ, q);
  const auto k_t = tensor("k", kK, k);
  const auto v_t = tensor("v", kV, v);
  auto options = fe::graph::SDPA_fp8_attributes()
                     .set_name("sdpa_fp8")
                     .set_generate_stats(false)
                     .set_attn_scale(static_cast<float>(1.0 / std::sqrt(double(q.size(3)))));
  auto outputs =
      graph->sdpa_fp8(q_t, k_t, v_t, scalar("descale_q", kDescaleQ), scalar("descale_k", kDescaleK),
                      scalar("descale_v", kDescaleV), scalar("descale_s", kDescaleS),
                      scalar("scale_s", kScaleS), scalar("scale_o", kScaleO), options);
  const int64_t heads = q.size(1), sq = q.size(2), d = q.size(3);
  outputs[0]
      ->set_output(true)
      .set_uid(kO)
      .set_dim(q.sizes().vec())
      .set_stride({heads * sq * d, sq * d, d, 1})
      .set_data_type(fe::DataType_t::FP8_E4M3);
  for (const auto& [index, uid] : {std::pair{2, kAmaxS}, std::pair{3, kAmaxO}}) {
    outputs[index]
        ->set_output(true)
        .set_uid(uid)
        .set_dim({1, 1, 1, 1})
        .set_stride({1, 1, 1, 1})
        .set_data_type(fe::DataType_t::FLOAT);
  }
  check(graph->validate(), "validate");
  check(graph->build_operation_graph(handle), "build_operation_graph");
  check(graph->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}),
        "create_execution_plans");
  check(graph->check_support(handle), "check_support");
  check(graph->build_plans(handle), "build_plans");
  return graph;
}

void check_input(const at::Tensor& t, const char* name) {
  if (!t.is_cuda() || t.scalar_type() != at::kFloat8_e4m3fn || t.dim() != 4 || t.size(0) != 1 ||
      t.stride(3) != 1) {
    throw ConfigError(fmt::format(
        "FP8 attention: {} must be a [1, heads, tokens, head_dim] float8_e4m3fn CUDA tensor with "
        "a contiguous last dimension (got {} {} [{}])",
        name, t.device().str(), c10::toString(t.scalar_type()), fmt::join(t.sizes(), ", ")));
  }
}

}  // namespace

bool available() {
  static const bool ok = [] {
    if (!at::hasCUDA()) return false;
    const cudaDeviceProp* props = at::cuda::getCurrentDeviceProperties();
    return props->major >= 9 && cudnnGetVersion() >= 90100;
  }();
  return ok;
}

namespace {

struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;  // null: cuDNN has no kernel for this shape
  int64_t workspace = 0;
};

std::mutex plans_mutex;
std::map<Key, Plan> plans;  // guarded by plans_mutex
std::map<int, Scalars> device_scalars;

// The cached plan for these inputs, built on first use (nullptr if cuDNN refuses the shape).
const Plan* plan_for(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     cudnnHandle_t handle) {
  const Key key{q.sizes().vec(),   q.strides().vec(), k.sizes().vec(),
                k.strides().vec(), v.strides().vec(), q.get_device()};
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan plan;
    try {
      plan.graph = build(q, k, v, handle);
      check(plan.graph->get_workspace_size(plan.workspace), "get_workspace_size");
    } catch (const std::exception& error) {
      log::warn("FP8 attention: no cuDNN kernel for q [{}] k [{}] ({}); bf16 attention there",
                fmt::join(q.sizes(), ", "), fmt::join(k.sizes(), ", "), error.what());
      plan.graph.reset();
    }
    it = plans.emplace(key, std::move(plan)).first;
  }
  return it->second.graph ? &it->second : nullptr;
}

void check_shapes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_input(q, "q");
  check_input(k, "k");
  check_input(v, "v");
  if (k.sizes() != v.sizes() || k.size(1) != q.size(1) || k.size(3) != q.size(3)) {
    throw ConfigError(fmt::format("FP8 attention: q [{}], k [{}], v [{}] do not match",
                                  fmt::join(q.sizes(), ", "), fmt::join(k.sizes(), ", "),
                                  fmt::join(v.sizes(), ", ")));
  }
}

cudnnHandle_t handle_on_current_stream() {
  cudnnHandle_t handle = at::native::getCudnnHandle();
  if (cudnnSetStream(handle, at::cuda::getCurrentCUDAStream()) != CUDNN_STATUS_SUCCESS)
    throw Error("FP8 attention: cudnnSetStream failed");
  return handle;
}

}  // namespace

bool supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (!available()) return false;
  check_shapes(q, k, v);
  const std::lock_guard lock(plans_mutex);
  return plan_for(q, k, v, handle_on_current_stream()) != nullptr;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_shapes(q, k, v);
  const std::lock_guard lock(plans_mutex);
  const cudnnHandle_t handle = handle_on_current_stream();
  const Plan* plan = plan_for(q, k, v, handle);
  if (plan == nullptr) {
    throw Error(fmt::format("FP8 attention: cuDNN has no kernel for q [{}] k [{}]",
                            fmt::join(q.sizes(), ", "), fmt::join(k.sizes(), ", ")));
  }
  const int device = q.get_device();
  auto s = device_scalars.find(device);
  if (s == device_scalars.end()) {
    const auto f32 = q.options().dtype(at::kFloat);
    s = device_scalars
            .emplace(device, Scalars{at::ones({1}, f32), at::full({1}, kE4M3Max, f32),
                                     at::full({1}, 1.0 / kE4M3Max, f32), at::zeros({1}, f32),
                                     at::zeros({1}, f32)})
            .first;
  }
  const Scalars& c = s->second;
  at::Tensor out = at::empty(q.sizes(), q.options());
  at::Tensor workspace =
      at::empty({std::max<int64_t>(plan->workspace, 1)}, q.options().dtype(at::kByte));
  std::unordered_map<int64_t, void*> pack = {
      {kQ, q.data_ptr()},
      {kK, k.data_ptr()},
      {kV, v.data_ptr()},
      {kO, out.data_ptr()},
      {kDescaleQ, c.one.data_ptr()},
      {kDescaleK, c.one.data_ptr()},
      {kDescaleV, c.one.data_ptr()},
      {kDescaleS, c.descale_s.data_ptr()},
      {kScaleS, c.scale_s.data_ptr()},
      {kScaleO, c.one.data_ptr()},
      {kAmaxS, c.amax_s.data_ptr()},
      {kAmaxO, c.amax_o.data_ptr()},
  };
  check(plan->graph->execute(handle, pack, workspace.data_ptr()), "execute");
  return out;
}

#else

bool available() { return false; }

bool supported(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }

at::Tensor attention(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  throw Error("FP8 attention needs a build with cudnn-frontend (see docs/benchmarks.md)");
}

#endif

}  // namespace longlive::fp8_attention
