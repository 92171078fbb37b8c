#pragma once
// Wan 2.1 VAE (`WanVAE_`): the quality decoder (streaming, with the causal-conv feature cache
// carried across blocks), the encoder, and export-grade decoding of a whole session's latents.
// Weights by their original names (`Wan2.1_VAE.pth`: `encoder.*`, `conv1.*`, `conv2.*`,
// `decoder.*`); every width is read from the weights, so reduced-width checkpoints load too.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "longlive/decoder.h"
#include "longlive/weights.h"

namespace longlive {

struct WanVaeConfig {
  int64_t dim = 96;  // base width
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<bool> temporal_downsample = {false, true, true};  // encoder; decoder reversed

  static WanVaeConfig wan_2_1();  // the released 2.1 VAE
  static WanVaeConfig tiny();     // width 8, as the golden fixtures
  // Reads every field from the tensor names and shapes (decoder.* wins; encoder.* otherwise).
  static WanVaeConfig infer(const WeightStore& weights);

  int64_t spatial_scale() const;   // 8 for the released model
  int64_t temporal_scale() const;  // 4 for the released model
  bool operator==(const WanVaeConfig&) const = default;
};

// Latent normalisation of LongLive's VAE wrapper: decode `z * std + mean`, encode
// `(mu - mean) / std`. 16 values each.
const std::vector<float>& wan_vae_latent_mean();
const std::vector<float>& wan_vae_latent_std();

// What the Wan VAE's decoder and encoder both take.
struct WanVaeOptions : DecoderOptions {
  // CUDA: let cuDNN time its convolution algorithms on the first use of each shape instead of
  // taking its heuristic pick (decoder: 139 vs 160 ms per block on an H200). A process-wide ATen
  // setting: once a decoder or encoder turns it on it stays on. The first call of each shape
  // pays the search.
  bool cudnn_search = true;
};

struct WanVaeDecoderOptions : WanVaeOptions {
  // Latent frames per decoder pass inside one decode() call (0: the whole block in one pass).
  // The feature cache makes any split exact; smaller passes bound peak activation memory.
  int64_t latent_frames_per_pass = 0;
};

// Streaming decoder: decode() on consecutive blocks after reset() equals decoding the whole video
// at once (the causal convolutions keep the last two input frames of the previous block).
class WanVaeDecoder final : public StreamingDecoder {
 public:
  WanVaeDecoder(const WeightStore& weights, const WanVaeDecoderOptions& options);
  ~WanVaeDecoder() override;
  WanVaeDecoder(WanVaeDecoder&&) noexcept;
  WanVaeDecoder& operator=(WanVaeDecoder&&) noexcept;

  void reset() override;
  // [1, T, z, h, w] normalised latents (any device) -> [N, 3, sH, sW] float32 in [0, 1].
  at::Tensor decode(const at::Tensor& block_latents) override;
  int64_t frames_for(int64_t latent_frames, bool first) const override;

  // Same as decode() but pixels as the reference returns them: [N, 3, sH, sW] float32, clamped
  // to [-1, 1].
  at::Tensor decode_pixels(const at::Tensor& block_latents);

  // decode_pixels() in two parts, for tiled decoding: the layers at latent resolution up to and
  // including the middle block (frame-global attention) -> features [1, C, T, h, w] on the
  // device; then the upsampling layers on features (a whole frame or a tile of it) -> pixels as
  // decode_pixels(). Both advance this decoder's temporal state (their own slots each).
  at::Tensor decode_trunk(const at::Tensor& block_latents);
  at::Tensor decode_branch(const at::Tensor& features);

  // A decoder sharing these weights with its own (empty) temporal state, e.g. one per tile.
  WanVaeDecoder fork() const;
  // Moves the temporal state (feature cache) to `device`, e.g. parked in host memory between
  // uses; decode() moves it back to the compute device when needed.
  void move_state(at::Device device, bool pin_memory = false);
  // Bytes held by the temporal state.
  int64_t state_bytes() const;

  // The feature cache in the order the decoder visits its cached convolutions (the reference's
  // `feat_cache` slots, without the never-cached 1x1x1 shortcut): the last <= 2 input frames of
  // each conv, [1, C, t, h, w]; undefined where nothing is cached yet.
  std::vector<at::Tensor> feature_cache() const;

  const WanVaeConfig& config() const;
  const WanVaeDecoderOptions& options() const;

 private:
  struct Impl;
  explicit WanVaeDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct WanVaeEncoderOptions : WanVaeOptions {
  // Groups of temporal_scale frames per encoder pass when a call does not say. 0: on a GPU all
  // of a call's groups in one pass (as the decoder decodes a block in one pass: fewer launches,
  // larger convolutions, more activation memory; H100 at 5e707c8, 480x832, a block of 12 frames
  // 148.0 -> 137.0 ms), on the CPU one group per pass (the reference's chunks of 4 frames).
  // LONGLIVE_ENCODE_GROUPS_PER_PASS overrides it (the A/B). Any split gives the same latents,
  // within rounding (the convolutions' shapes differ): a camera's frames say 1 in every call
  // (VaceFrameSource::filmed), so that its blocks read in parts or whole have the same bits.
  int64_t groups_per_pass = 0;
};

// The encoder runs the decoder's kind of 3x3x3 convolutions: the layout `best` picks on a GPU is
// the one measured fastest for the decoder (channels-last), until the encoder's own run says
// otherwise (`longlive bench --vace` times both layouts).
class WanVaeEncoder {
 public:
  WanVaeEncoder(const WeightStore& weights, const WanVaeEncoderOptions& options);
  ~WanVaeEncoder();
  WanVaeEncoder(WanVaeEncoder&&) noexcept;
  WanVaeEncoder& operator=(WanVaeEncoder&&) noexcept;

  // video: [1, T, 3, H, W] in [-1, 1] with T = 1 + 4k (temporal_scale) -> normalised latent
  // means [1, 1 + k, z, H/8, W/8] float32 on the encoder's device. Frames are processed as the
  // reference does (1, then groups of temporal_scale frames, `groups_per_pass` groups at a time;
  // 0: WanVaeEncoderOptions::groups_per_pass's rule).
  at::Tensor encode(const at::Tensor& video, int64_t groups_per_pass = 0);

  // The causal-conv cache of one streamed signal (VACE keeps one per control stream).
  class Stream {
   public:
    Stream();
    ~Stream();
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) noexcept;
    void reset();  // the next encode_next() starts a new video
    bool started() const;
    // From track_changes(true) on, changed() says whether an encode_next() altered the stream's
    // memory (starting it does). An encode that left it unchanged has reached a fixed point for
    // its input: the same input would give the same latents again, and leave it unchanged again.
    void track_changes(bool on);
    bool changed() const;

   private:
    friend class WanVaeEncoder;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };
  // Encodes the next frames of a stream, [1, T, 3, H, W] in [-1, 1]: the first call takes
  // 1 + 4k frames (its first frame is encoded alone), later calls 4k frames; returns their
  // latents as encode() does. Any such split of a video gives encode()'s latents.
  at::Tensor encode_next(const at::Tensor& video, Stream& stream, int64_t groups_per_pass = 0);

  const WanVaeConfig& config() const;
  at::Device device() const;

  // Another encoder of the same weights that shares this one's converted weights (they are never
  // written; streams live outside): no conversion and no copy. SessionFactory builds one encoder
  // per device and hands out these.
  WanVaeEncoder share() const;

 private:
  struct Impl;
  explicit WanVaeEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Loads Wan2.1_VAE.pth / safetensors, keeping `encoder.*`, `decoder.*`, `conv1.*`, `conv2.*`.
WeightStore load_wan_vae_weights(const std::filesystem::path& file);
// Random weights with the reference's names and shapes (for tests and benches). Weights
// 0.75*N/sqrt(fan_in), biases 0.05*N, norm gains 1 + 0.1*N, as float32.
WeightStore make_random_wan_vae_weights(const WanVaeConfig& config, uint64_t seed,
                                        bool with_encoder = true);

// ---- Export-grade decoding of a whole session --------------------------------------------------

struct WanVaeExportOptions {
  // Device bytes the decode may hold at once beyond the weights (activations, feature caches,
  // output staging); 0 = unlimited. Planned with `estimate_wan_vae_decode_bytes`.
  int64_t memory_budget_bytes = 0;
  // Spatial tile size and minimum overlap in latent pixels (0 = chosen from the budget; a tile
  // size >= the frame disables tiling). Overlaps are blended linearly; interiors are copied.
  int64_t tile_latent = 0;
  int64_t tile_overlap_latent = 12;
  // Latent frames decoded per temporal slice (0 = chosen from the budget).
  int64_t slice_latent_frames = 0;
  // Finished slices go to host memory (pinned when the decoder runs on CUDA).
  bool pin_host_memory = true;
};

struct WanVaeExportPlan {
  int64_t tile_h = 0, tile_w = 0;    // latent pixels per tile
  int64_t tiles_y = 1, tiles_x = 1;  // tiles along each axis
  int64_t slice_latent_frames = 0;   // latent frames per temporal slice
  bool park_tile_state = false;      // tile feature caches wait in host memory between slices
  int64_t estimated_peak_bytes = 0;  // planned device bytes (see estimate_wan_vae_decode_bytes)
  bool exact() const { return tiles_y == 1 && tiles_x == 1; }
};

// Upper estimate of the device bytes one decoder pass over `latent_frames` frames of an
// h x w latent tile needs (activations at their peak + the tile's feature cache + staging of the
// decoded frames), at `dtype`. Backend scratch (cuDNN workspace, oneDNN scratchpad) is not
// included.
int64_t estimate_wan_vae_decode_bytes(const WanVaeConfig& config, int64_t latent_h,
                                      int64_t latent_w, int64_t latent_frames, at::ScalarType dtype,
                                      bool first_slice);

// Chooses slices and tiles: the whole frame (exact) when it fits the budget, otherwise the largest
// tiles that fit. ConfigError when even the smallest tile does not fit.
WanVaeExportPlan plan_wan_vae_export(const WanVaeConfig& config, int64_t latent_frames,
                                     int64_t latent_h, int64_t latent_w,
                                     const DecoderOptions& device,
                                     const WanVaeExportOptions& options);

// Decodes latents [1, T, z, h, w] (host or device) slice by slice; `sink` receives each finished
// slice in order as [N, 3, H, W] float32 in [0, 1] in host memory (valid during the call only).
// Uses `decoder`'s weights and device; its own temporal state is left untouched.
WanVaeExportPlan decode_wan_vae_video(const WanVaeDecoder& decoder, const at::Tensor& latents,
                                      const WanVaeExportOptions& options,
                                      const std::function<void(const at::Tensor&)>& sink);

}  // namespace longlive
