#pragma once
// VACE context encoding: control frames, masks and reference images -> the 96-channel context a
// VACE-conditioned block reads (StreamGenerator::set_vace). As Wan2.1-VACE and Scope's causal
// adaptation (the fixtures' reference) do:
//   masks are binarised at 0.5 (1 = generate, 0 = keep);
//   inactive = frames * (1 - m) and reactive = frames * m, each through the Wan VAE encoder with
//   its own streaming cache, concatenated -> 32 channels; with a mask that is not all ones
//   (inpainting) the reactive frames of each block are encoded as a video of their own (a fresh
//   cache: its first frame alone, then whole groups of 4), as Scope does;
//   the mask -> 64 channels (8x8 pixel blocks to channels, nearest-exact in time to the latent
//   frames), a zero frame in front per reference image;
//   context = cat(latents, mask latent) -> 96 channels.
// A reference image is encoded alone (its own, fresh cache), zero-padded to the channels of what
// it is put in front of. Conditioning maps (depth, pose, edges) use an all-ones mask.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <vector>
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/timeline.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {

// The Wan 2.1 VAE's strides (time, height, width).
inline constexpr std::array<int64_t, 3> kVaceVaeStride = {4, 8, 8};

// mask [T, H, W] (any float, binarised at 0.5 by the caller or not: values are used as given)
// -> [stride_h * stride_w, (T + 3) / stride_t + references, H / stride_h, W / stride_w] float32.
// H and W must be multiples of 2 * stride (as the reference computes the latent size).
at::Tensor vace_mask_latent(const at::Tensor& mask, int64_t references = 0,
                            const std::array<int64_t, 3>& stride = kVaceVaeStride);

// The context from its parts: latents [2 z, F, h, w] (inactive, reactive) and the mask latent
// [64, F, h, w] -> [2 z + 64, F, h, w]. ConfigError when the parts do not fit together.
at::Tensor vace_context(const at::Tensor& latents, const at::Tensor& mask_latent);

// Binarises a mask at 0.5 (values > 0.5 -> 1).
at::Tensor vace_binarize_mask(const at::Tensor& mask);

class TaehvEncoder;
class WanVaeEncoder;
struct WanVaeEncoderOptions;

// Deterministic random VACE weights for `dit` (tests, the tiny random model, `bench --vace`):
// ceil(layers / stride) blocks, module-file names, weights N(0,1)/sqrt(fan_in) as
// make_random_wan_weights (implemented in model/vace.cpp).
WeightStore make_random_vace_weights(const WanConfig& dit, int64_t in_channels, uint64_t seed,
                                     int64_t stride = 2);

// The conditioning mode's inactive stream, shared by the inputs of a session: with an all-ones
// mask that stream encodes black frames, block after block from a video's start, so its latents
// depend only on the encoder's weights, the frame size and the blocks' frame counts, never on
// the input. The first conditioning input records them (and the stream's memory, until it
// reaches its fixed point); every later one takes them instead of encoding: half of the
// encoder's work for the first blocks after a pick, the first conditioned block included, with
// the same bits. One per encoder weights, device and dtype (SessionFactory keeps it); the
// encoders sharing it must run on one CUDA stream (LiveInputs: the kept encode worker's).
class BlackInactiveLatents {
 public:
  BlackInactiveLatents();
  ~BlackInactiveLatents();
  BlackInactiveLatents(const BlackInactiveLatents&) = delete;
  BlackInactiveLatents& operator=(const BlackInactiveLatents&) = delete;
  // Blocks recorded for frames of height x width, and whether the last is the fixed point.
  int64_t blocks(int64_t height, int64_t width) const;
  bool at_fixed_point(int64_t height, int64_t width) const;

 private:
  friend class VaceContextEncoder;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming VACE encoder over the Wan VAE encoder: one per session, reset() at a new video.
class VaceContextEncoder {
 public:
  // vae: Wan2.1_VAE weights with `encoder.*` and `conv1.*`.
  VaceContextEncoder(const WeightStore& vae, const WanVaeEncoderOptions& options);
  // Over an encoder built already (SessionFactory: WanVaeEncoder::share of the one it keeps).
  explicit VaceContextEncoder(WanVaeEncoder encoder);
  // Over TAEHV's encoder instead of the Wan VAE's (a preset's `input_encoder: taehv`, Daydream
  // Scope's `vae_type: tae`): ~1/30 of the arithmetic, latents close to the Wan VAE's but not its.
  // The block's frames all go through it (a stream's first block of 1 + 4k frames padded at the end
  // with its last frame), each stream with its own memory; no shared black record (it holds the
  // Wan VAE's latents), the black inactive stream's fixed point reused as over the Wan VAE.
  // Everything else as over the Wan VAE.
  explicit VaceContextEncoder(std::shared_ptr<const TaehvEncoder> encoder);
  ~VaceContextEncoder();
  VaceContextEncoder(VaceContextEncoder&&) noexcept;
  VaceContextEncoder& operator=(VaceContextEncoder&&) noexcept;

  // Empties both streaming caches: the next block is the first of a video.
  void reset();

  // One block of control frames [T, 3, H, W] in [-1, 1] (T = 1 + 4k for the first block of a
  // stream, 4k later: 9 then 12 for LongLive's 3 latent frames per block); mask [T, H, W] or
  // [1, T, H, W] (undefined: all ones, the conditioning mode); references [R, 3, H, W] in [-1, 1]
  // (undefined or R = 0: none), put in front. Returns [96, R + F, H/8, W/8] float32.
  at::Tensor encode(const at::Tensor& frames, const at::Tensor& mask,
                    const at::Tensor& references = {});
  // A conditioning block (all-ones mask) encoded in parts as its frames come: a paced camera's
  // block while the camera films it (VaceConditioner), so that only its last part is left to
  // encode once the last frame is filmed. begin_parts(count), then encode_part() with the
  // block's frames in order, temporal_scale() frames at a time (or a multiple), then
  // end_parts(references): what encode(all the frames, {}, references) returns, bit for bit
  // with one group of frames per pass (set_frame_groups_per_pass(1), a camera's; parts of
  // temporal_scale() frames; on the CPU the encoder's rule is that too). The
  // first part also takes the block's black inactive latents. Only past a stream's first block
  // (ConfigError otherwise, or when the parts do not add up to `count`).
  void begin_parts(int64_t count);
  void encode_part(const at::Tensor& frames);
  at::Tensor end_parts(const at::Tensor& references = {});
  // Reference images only (no control frames): [R, 3, H, W] -> [96, R, H/8, W/8], the latents
  // zero-padded to 96 channels. Does not touch the streaming caches.
  at::Tensor encode_references(const at::Tensor& references);

  // The parts, for tests: inactive/reactive latents of the last encode() [16, F, h, w] each.
  const at::Tensor& last_inactive() const;
  const at::Tensor& last_reactive() const;
  // With an all-ones mask (conditioning) the inactive stream encodes black frames block after
  // block. Once one such encode leaves that stream's memory unchanged (a fixed point: ~10 blocks
  // at the test fixture's size, 12 for the full-size encoder at 64x64 on the CPU), its latents
  // repeat exactly and are reused instead of encoded: half of the encoder's work per block. The
  // memory is compared on at most kFixedPointProbes encodes, until the input changes. On by
  // default; inactive_encodes_skipped() counts.
  static constexpr int64_t kFixedPointProbes = 64;
  void set_reuse_fixed_inactive(bool on);
  int64_t inactive_encodes_skipped() const;
  // Groups of temporal_scale() frames per encoder pass for the input's frames (the reactive
  // stream, an inpainting block's inactive frames, parts); 0: the encoder's rule. A camera's
  // conditioner sets 1 (VaceFrameSource::filmed). The black inactive frames (shared by every
  // input through the record) and reference images always take the encoder's rule.
  void set_frame_groups_per_pass(int64_t groups);
  // Black inactive blocks taken from (and added to) `record` from now on, with the fixed point
  // reuse above on (null: none). A block the record cannot give (another frame count than
  // recorded, a mask that is not all ones) rebuilds this encoder's own inactive stream from the
  // recorded blocks' counts first, so every block's latents are what encoding would give.
  void share_black_inactive(std::shared_ptr<BlackInactiveLatents> record);
  int64_t inactive_blocks_from_record() const;  // taken from the record, not encoded here
  int64_t channels() const { return 96; }
  int64_t temporal_scale() const;  // control frames per latent frame (4)
  bool runs_taehv() const;         // built over TAEHV's encoder
  at::Device device() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Live conditioning ---------------------------------------------------------------------

class StreamGenerator;

// What the control input is (docs/vace.md):
//   conditioning  control frames (depth, pose, edges, ... made elsewhere) with an all-ones mask,
//                 optionally reference images in front;
//   reference     reference images only (reference-to-video), no frames;
//   inpaint       video frames with a mask: 1 (white) = generate, 0 = keep.
enum class VaceMode { conditioning, reference, inpaint };
VaceMode parse_vace_mode(const std::string& name);  // ConfigError naming the choices
std::string to_string(VaceMode mode);

// Control frames, block by block (a video file, a camera, a test pattern).
class VaceFrameSource {
 public:
  virtual ~VaceFrameSource() = default;
  // The next `count` frames, [count, 3, H, W] float32 in [-1, 1] at the session's size.
  virtual at::Tensor next_frames(int64_t count) = 0;
  // An input's first frames, as next_frames. A live input paced by its camera hands out the
  // frames it has (at least one, waited for), the latest repeated up to `count`, instead of
  // waiting for the camera to film the rest (a first block's 9 frames on a 16 fps grid take over
  // half a second): the first conditioned block follows the picture at the pick.
  virtual at::Tensor first_frames(int64_t count) { return next_frames(count); }
  // Whether next_frames(count) would return without waiting for the input (files, pools: always;
  // a paced live input: when it has captured them). The encoders read a block's frames a block
  // ahead only when they are there: reading them ahead from a camera would hold the block before
  // until the camera has filmed the next one (a block of camera time, 0.75 s at 16 fps, on every
  // frame's way to the screen).
  virtual bool has_frames(int64_t count) const {
    (void)count;
    return true;
  }
  // Whether these are a camera's frames, live or replayed from its capture file (timeline kind
  // `frames`). A camera's block may be read in parts as it is filmed and each part encoded alone
  // (a group of 4 frames per encoder pass), or read whole (its frames there already, the replay):
  // the encoders then take every block of such a source a group per pass, so that its latents do
  // not depend on how it was read and `render` replays a camera bit for bit. Other sources take a
  // call's frames in one pass on a GPU (WanVaeEncoderOptions::groups_per_pass: faster).
  virtual bool filmed() const { return false; }
  // The next `count` frames, as next_frames(count) gives them, handed to `part_read` `part`
  // frames at a time (the last part may be shorter), each part as soon as the input has it: a
  // paced camera hands a block's first frames out while it films the last ones, so that they
  // are encoded meanwhile (VaceConditioner, VideoToVideo: a block read at its turn). The
  // default reads them all, then hands the parts out.
  // (Inline, as every member here: the parsers' fuzz targets link sources without the engine.)
  virtual void next_frames_in_parts(int64_t count, int64_t part,
                                    const std::function<void(const at::Tensor&)>& part_read) {
    check_parts(count, part);
    hand_out_in_parts(next_frames(count), part, part_read);
  }
  // Error naming both when `count` frames cannot be read in parts of `part`.
  static void check_parts(int64_t count, int64_t part) {
    if (count < 1 || part < 1)
      throw Error("frames read in parts: " + std::to_string(count) + " frames in parts of " +
                  std::to_string(part));
  }
  // Frames read already [N, ...] handed to `part_read` `part` at a time (the last may be shorter).
  static void hand_out_in_parts(const at::Tensor& frames, int64_t part,
                                const std::function<void(const at::Tensor&)>& part_read) {
    const int64_t count = frames.size(0);
    for (int64_t begin = 0; begin < count; begin += part)
      part_read(frames.narrow(0, begin, std::min(part, count - begin)));
  }
  // A live input's health: frames dropped (generation behind) and repeated (input stalled), why
  // it is interrupted while it reconnects (a camera unplugged: its last frame is held), and why
  // its capture ended for good (it did not come back). Files have none of those. Cameras and
  // files: what the crop to the session's aspect ratio cost ("640x480 cropped to 832x480: ...").
  struct Counts {
    int64_t dropped = 0;
    int64_t repeated = 0;
    std::string error;
    std::string interrupted;
    std::string framing;
  };
  virtual Counts counts() const { return {}; }
};

struct VaceSettings {
  VaceMode mode = VaceMode::conditioning;
  double scale = 1.0;
  at::Tensor references;  // [R, 3, H, W] in [-1, 1]; undefined: none
  at::Tensor mask;        // inpaint: [H, W] (or [T, H, W] per block), 1 = generate
};

class EncodeAhead;
class EncodeWorker;

// The worker thread and CUDA stream that encode inputs a block ahead (VaceConditioner,
// VideoToVideo). A caller that keeps one across inputs (LiveInputs: one for the session) keeps
// what cuDNN found on its thread: a camera picked again starts at once instead of searching
// every convolution again. Null on a CPU or with LONGLIVE_ENCODE_AHEAD=0.
std::shared_ptr<EncodeWorker> make_encode_worker(at::Device device);

// Feeds a generator block by block: before each next_block(), takes the block's control frames
// (1 + 4 (F - 1) for the first block of a video, 4 F later: 9 then 12 for 3 latent frames per
// block, the frames the decoder gives back), encodes them with the mask and references, and
// sets the result on the generator. On a GPU (unless LONGLIVE_ENCODE_AHEAD=0), each block's
// control frames are read when the block before starts and encoded beside its DiT (a thread and
// CUDA stream of their own, EncodeAhead): the encoder leaves the generator's critical path, and a
// live camera's frames are one block older when they condition. A video file gives the same frames
// either way.
class VaceConditioner {
 public:
  // ConfigError when the settings do not fit the mode (no source for conditioning or inpaint,
  // no mask for inpaint, no references for reference).
  // `worker`: see make_encode_worker (null: one of its own).
  VaceConditioner(std::unique_ptr<VaceContextEncoder> encoder, VaceSettings settings,
                  std::shared_ptr<VaceFrameSource> source,
                  std::shared_ptr<EncodeWorker> worker = nullptr);
  ~VaceConditioner();
  void before_block(StreamGenerator& generator);
  // The block before_block() fed, made again (given up mid-way, StreamGenerator::
  // next_block_unless): the context it was given, at the scale of now; nothing is read or
  // encoded, so the source skips no frames. Error before the first before_block().
  void feed_again(StreamGenerator& generator);
  // Whether the next before_block() will wait for its input to film its frames (a paced live
  // camera whose frames are read at their block): the engine hands out what is decoded first.
  bool waits_for_frames(int64_t latent_frames) const;
  void set_scale(double scale) { settings_.scale = scale; }
  const VaceSettings& settings() const { return settings_; }
  // A new video: the encoder's streaming caches are emptied, the next block is a first block.
  void reset();
  int64_t blocks() const { return blocks_; }

 private:
  std::unique_ptr<VaceContextEncoder> encoder_;
  VaceSettings settings_;
  std::shared_ptr<VaceFrameSource> source_;
  at::Tensor reference_context_;  // reference mode: encoded once
  at::Tensor last_context_;       // the last block's (feed_again)
  int64_t blocks_ = 0;
  // Reads block `index`'s control frames (and mask) and encodes them on the current stream.
  at::Tensor encode_block(int64_t index, int64_t latent_frames);
  struct BlockInput {
    at::Tensor frames, mask;
  };
  BlockInput read_block(int64_t index, int64_t latent_frames);
  at::Tensor encode_input(const BlockInput& input);
  // Whether the next block is read in parts as it is filmed (encode_ahead.h: reads_as_filmed),
  // and that read: each part encoded as it comes (VaceContextEncoder::begin_parts).
  bool reads_as_filmed(int64_t latent_frames) const;
  at::Tensor encode_as_filmed(int64_t latent_frames);
  std::unique_ptr<EncodeAhead> ahead_;  // last: waits for its work before the encoder goes
};

// ---- Video-to-video (no VACE) ------------------------------------------------------------------

struct VideoToVideoState;

// Feeds a generator's video-to-video input block by block: the block's input frames (9, then 12,
// as for VACE) through the Wan VAE encoder (one streaming cache), set with the strength. Encoded
// a block ahead on a GPU unless LONGLIVE_ENCODE_AHEAD=0, as VaceConditioner's.
class VideoToVideo {
 public:
  VideoToVideo(std::unique_ptr<WanVaeEncoder> encoder, double strength,
               std::shared_ptr<VaceFrameSource> source,
               std::shared_ptr<EncodeWorker> worker = nullptr);
  // Over TAEHV's encoder (a preset's input_encoder: taehv): the frames in [0, 1], a stream's
  // first block of 1 + 4k frames padded at the end with its last frame (the same latent count).
  VideoToVideo(std::shared_ptr<const TaehvEncoder> encoder, double strength,
               std::shared_ptr<VaceFrameSource> source,
               std::shared_ptr<EncodeWorker> worker = nullptr);
  ~VideoToVideo();
  void before_block(StreamGenerator& generator);
  // As VaceConditioner::feed_again: the last block's input latents again, at the strength of now.
  void feed_again(StreamGenerator& generator);
  bool waits_for_frames(int64_t latent_frames) const;  // as VaceConditioner's
  void set_strength(double strength) { strength_ = strength; }
  void reset();  // a new video

 private:
  std::unique_ptr<WanVaeEncoder> encoder_;  // or state_'s TAEHV encoder
  std::unique_ptr<VideoToVideoState> state_;
  double strength_;
  std::shared_ptr<VaceFrameSource> source_;
  at::Tensor last_latents_;  // the last block's (feed_again)
  int64_t blocks_ = 0;
  at::Tensor read_block(int64_t index, int64_t latent_frames);
  at::Tensor encode_frames(const at::Tensor& frames);
  at::Tensor encode_as_filmed(int64_t count);  // as VaceConditioner's
  int64_t temporal_scale() const;              // input frames per latent frame (4)
  void start(std::shared_ptr<EncodeWorker> worker, at::Device device);  // the constructors' rest
  std::unique_ptr<EncodeAhead> ahead_;  // last: as VaceConditioner's (encoded a block ahead)
};

// ---- Inputs of a live session (camera, video file, image)
// The control inputs of a live Performance: a VACE input (control frames, reference image,
// inpainting mask) and a video-to-video input, each from a video file, a camera, an image or
// camera frames captured earlier (docs/vace.md). Sources are opened through an InputOpener
// (FFmpeg lives in recorder/: ffmpeg_input_opener()); camera frames are saved as they are used,
// so a timeline names the saved file and `render` replays the session exactly.
class SessionFactory;
class StreamGenerator;
struct Session;

// Opens what an InputSource names, at the session's size (IoError / FormatError naming the file
// or device). `frames` serves video, camera and image sources; captured frames (InputKind::frames)
// need no opener.
struct InputOpener {
  std::function<std::shared_ptr<VaceFrameSource>(const InputSource& source, int height, int width)>
      frames;
  // [1, 3, H, W] in [-1, 1] (reference images)
  std::function<at::Tensor(const std::filesystem::path& path, int height, int width)> image;
  // [H, W] of 0/1, 1 = generate (inpainting masks)
  std::function<at::Tensor(const std::filesystem::path& path, int height, int width)> mask;
};

// What the inputs are doing, for the UI (EngineStats::inputs).
struct InputStatus {
  bool vace_available = false;  // the model has VACE weights
  std::string vace_status;      // SessionFactory::vace_status()
  std::string vace;             // "conditioning: video 'in.mp4'"; empty: no VACE input
  double vace_scale = 1.0;
  std::string v2v;  // "video 'in.mp4'"; empty: no video-to-video input
  double v2v_strength = 0.0;
  int64_t frames_used = 0;  // control frames handed to the encoders
  int64_t dropped = 0;      // camera frames dropped (generation behind)
  int64_t repeated = 0;     // camera frames repeated (input stalled)
  std::string interrupted;  // a camera lost and being reopened (its last frame held); empty: fine
  std::string framing;      // what the crop to the session's aspect ratio cost; empty: none
  // An input picked and being opened beside the video ("camera '/dev/video0'"); empty: none.
  // Filled by Engine::stats() (EngineOptions::open_inputs_ahead).
  std::string opening;
  at::Tensor preview;  // [h, w, 3] uint8, the last control frame (preprocessed), small
};

// Built-in preprocessors of control frames [T, 3, H, W] in [-1, 1], on the frames' device:
// "gray" (BT.601 luma in all three channels), "edges" (Sobel gradient magnitude of the luma,
// a unit step -> 1, white edges on black), "" (unchanged). ConfigError for another name.
at::Tensor preprocess_frames(const at::Tensor& frames, const std::string& kind);

// Camera frames saved as they are used: a raw file, a 16-byte header ("LLRGB8\0\0", int32
// height, int32 width, little-endian) then [H, W, 3] uint8 frames. Raw so that a replay reads
// back the very values the live session encoded (a lossy codec would not).
// The frames are converted and written on a thread of the writer's own, so a camera's block
// costs the engine thread no conversion or disk time; nothing appended is dropped (append waits
// while a few blocks are still queued, the destructor writes what is left).
class FrameCaptureWriter {
 public:
  FrameCaptureWriter(const std::filesystem::path& path, int height, int width);  // IoError
  ~FrameCaptureWriter();  // writes what is queued, then closes the file
  FrameCaptureWriter(const FrameCaptureWriter&) = delete;
  FrameCaptureWriter& operator=(const FrameCaptureWriter&) = delete;
  // [T, 3, H, W] in [-1, 1], host memory the caller leaves as it is: queued for writing. IoError
  // naming the file when an earlier write failed or the size is not the file's.
  void append(const at::Tensor& frames);
  // Waits until every frame appended is in the file; IoError when a write failed.
  void flush();
  const std::filesystem::path& path() const { return path_; }
  int64_t frames() const { return frames_; }  // appended

 private:
  struct Writer;
  std::filesystem::path path_;
  int height_, width_;
  int64_t frames_ = 0;
  std::unique_ptr<Writer> writer_;
};

// A capture file read back from frame `offset`; past its end the last frame is repeated.
class CapturedFrameSource final : public VaceFrameSource {
 public:
  // IoError naming the file when it cannot be read; FormatError for a bad header or a size other
  // than the session's.
  CapturedFrameSource(const std::filesystem::path& path, int height, int width, int64_t offset = 0);
  at::Tensor next_frames(int64_t count) override;
  bool filmed() const override { return true; }  // a camera's, replayed
  int64_t frames() const;                        // in the file now

 private:
  std::filesystem::path path_;
  int height_, width_;
  int64_t next_;
  at::Tensor last_;
};

// One picture as every frame.
class StillFrameSource final : public VaceFrameSource {
 public:
  explicit StillFrameSource(at::Tensor image) : image_(std::move(image)) {}  // [1, 3, H, W]
  at::Tensor next_frames(int64_t count) override {
    return image_.expand({count, -1, -1, -1}).contiguous();
  }

 private:
  at::Tensor image_;
};

// One live input read by several inputs at once (VACE and video-to-video on the same camera,
// or an input replaced by the same camera with other settings): a camera can be opened once,
// and each of its reads goes to every reader, in order, so the inputs see the same frames
// instead of taking turns. A reader joins at the next read. A reader asking for fewer frames
// than a shared read holds gets its newest; for more, it reads the camera itself.
class SharedFrameSource : public std::enable_shared_from_this<SharedFrameSource> {
 public:
  explicit SharedFrameSource(std::shared_ptr<VaceFrameSource> source);
  SharedFrameSource(const SharedFrameSource&) = delete;
  SharedFrameSource& operator=(const SharedFrameSource&) = delete;
  // A new reader (a VaceFrameSource of its own; this object made by make_shared): the source
  // stays open while any reader lives.
  std::shared_ptr<VaceFrameSource> reader();

 private:
  class Reader;
  at::Tensor read(Reader& reader, int64_t count, bool first);
  void read_in_parts(Reader& reader, int64_t count, int64_t part,
                     const std::function<void(const at::Tensor&)>& part_read);
  // Takes the reader's next shared read (locks); undefined when it has none of `count` frames.
  at::Tensor take_shared(Reader& reader, int64_t count);
  // Keeps what the reader read from the source (in parts) for the readers behind it (locks).
  void keep_read(const Reader& reader, const std::vector<at::Tensor>& parts);
  bool has_frames(const Reader& reader, int64_t count) const;
  void drop_taken();  // reads every reader has had (locked)

  std::shared_ptr<VaceFrameSource> source_;
  mutable std::mutex mutex_;
  std::deque<at::Tensor> reads_;  // oldest first; not yet had by every reader
  int64_t first_read_ = 0;        // the index of reads_.front()
  std::vector<Reader*> readers_;
};

// The VACE and video-to-video inputs of one Performance (not thread-safe, like it).
class LiveInputs {
 public:
  // capture_dir: where camera frames are saved (created when needed).
  LiveInputs(InputOpener opener, std::filesystem::path capture_dir);
  ~LiveInputs();

  // Opens the input (ConfigError / IoError / FormatError: nothing changes) and returns the
  // request as a timeline records it: a camera becomes its capture file. Replaces any VACE input.
  // Sources are opened at the session's size; preprocessing runs on its device.
  VaceRequest set_vace(const VaceRequest& request, SessionFactory& factory, const Session& session);
  void clear_vace(StreamGenerator* generator);
  void set_vace_scale(double scale);  // ConfigError outside 0..kMaxVaceScale
  V2vRequest set_v2v(const V2vRequest& request, SessionFactory& factory, const Session& session);
  void clear_v2v(StreamGenerator* generator);
  void set_v2v_strength(double strength);  // ConfigError outside (0, 1]

  bool has_vace() const;
  bool has_v2v() const;
  // The current inputs as requests that continue from where they are now (the offsets of the
  // frames used so far): what a new timeline states at its start.
  std::optional<VaceRequest> vace_now() const;
  std::optional<V2vRequest> v2v_now() const;

  void reset();  // a new video: the encoders' streaming caches are emptied
  // Readies the inputs' encoding so that the first video or camera picked starts as fast as the
  // later ones (docs/vace.md, "The first pick"): builds the input encoder, and on the inputs'
  // encode worker encodes the first two blocks of a black video at the session's size, as a VACE
  // input (when the model has VACE weights, else as a video-to-video one: both kinds run the
  // same shared encoder on that worker), twice: with a file's encoder passes and with a camera's
  // (VaceFrameSource::filmed), whose convolutions have other shapes. That records the
  // conditioning mode's black inactive blocks the first VACE input would have encoded, and has
  // cuDNN find its plans for the encoder's convolutions on the thread that will run them (ATen
  // keeps them per thread): on an H100 a first pick spent ~2.5 s on these. Waits for the GPU;
  // returns the milliseconds spent.
  double warm(SessionFactory& factory, const Session& session);
  // Waits until the camera frames used so far are in their capture files (a timeline handed out
  // names them); IoError when a write failed.
  void flush_captures() const;

  // Before each block (`block`: its index in the video): hands the block's control input to the
  // generator. The same block again (given up mid-way and made again) gets what it was given
  // the first time, at the scale and strength of now: no frames are skipped, so a replay, which
  // makes each block once, sees the same frames. An input whose source failed (a file that
  // cannot be read, a camera gone) is dropped and the generator runs on without it: the kinds
  // dropped (vace_off, v2v_off) are returned, with why in `messages`.
  std::vector<EventKind> before_block(StreamGenerator& generator, int64_t block,
                                      std::vector<std::string>& messages);
  // Whether before_block(generator, block) will wait for a live input to film frames.
  bool waits_for_frames(const StreamGenerator& generator, int64_t block) const;

  InputStatus status(const SessionFactory* factory) const;

 private:
  struct Tap;
  struct Vace;
  struct V2v;
  // A camera already read by an input (the one being replaced, with another preprocessor or
  // mode, or the other kind of input) is read through its SharedFrameSource instead of opened a
  // second time, which a V4L2 camera refuses while it streams ("Device or resource busy").
  std::shared_ptr<Tap> open_tap(const InputSource& source, const Session& session);
  // A video or camera through the opener (ConfigError without FFmpeg).
  std::shared_ptr<VaceFrameSource> open_frames(const InputSource& source, int height,
                                               int width) const;
  std::shared_ptr<SharedFrameSource> running_camera(const InputSource& source) const;

  // The inputs' encode worker on `device`, one for both kinds and kept for the session (made on
  // first use, again for another device): cuDNN's plans are found once, on its thread, and the
  // encodes share one stream's memory (two inputs at once queue their encodes on it, which the
  // GPU would run one after the other anyway). Null where inputs are encoded in place, or with
  // LONGLIVE_ENCODE_WORKER=input (each input a worker of its own, as before: the A/B).
  std::shared_ptr<EncodeWorker> worker(at::Device device);

  InputOpener opener_;
  std::filesystem::path capture_dir_;
  // Before the inputs: they wait for their work on it when they go.
  std::shared_ptr<EncodeWorker> encode_worker_;
  std::unique_ptr<Vace> vace_;
  std::unique_ptr<V2v> v2v_;
};

}  // namespace longlive
