// LiveInputs: the VACE and video-to-video inputs of a Performance, opened by request, fed to the
// generator before each block, dropped (with a message) when their source fails.
#include "longlive/vace.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "core/env.h"
#include "encode_ahead.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "longlive/session.h"
#include "longlive/taehv.h"
#include "longlive/wan_vae.h"

namespace longlive {
namespace {

constexpr char kCaptureMagic[8] = {'L', 'L', 'R', 'G', 'B', '8', 0, 0};
constexpr int64_t kCaptureHeader = 16;
constexpr int64_t kPreviewSide = 96;  // the thumbnail's longer side

// [T, 3, H, W] in [-1, 1] -> [T, H, W, 3] uint8, the inverse of the sources' u8 / 127.5 - 1.
at::Tensor to_rgb8(const at::Tensor& frames) {
  return frames.detach()
      .to(at::kCPU, at::kFloat)
      .add(1.0)
      .mul(127.5)
      .round()
      .clamp(0, 255)
      .to(at::kByte)
      .permute({0, 2, 3, 1})
      .contiguous();
}

at::Tensor luma(const at::Tensor& frames) {  // [T, 1, H, W]
  return frames.narrow(1, 0, 1) * 0.299 + frames.narrow(1, 1, 1) * 0.587 +
         frames.narrow(1, 2, 1) * 0.114;
}

void check_scale(double scale) {
  if (!std::isfinite(scale) || scale < 0 || scale > kMaxVaceScale)
    throw ConfigError(fmt::format("VACE scale {} is outside 0..{}", scale, kMaxVaceScale));
}

void check_strength(double strength) {
  if (!std::isfinite(strength) || strength <= 0 || strength > 1)
    throw ConfigError(fmt::format("video-to-video strength {} is outside (0, 1]", strength));
}

bool is_oom(const std::exception& e) {
  return dynamic_cast<const OutOfMemoryError*>(&e) != nullptr ||
         dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr;
}

}  // namespace

at::Tensor preprocess_frames(const at::Tensor& frames, const std::string& kind) {
  if (kind.empty()) return frames;
  if (kind == "gray") return luma(frames).expand({-1, 3, -1, -1}).contiguous();
  if (kind == "edges") {
    // Sobel on the luma in [0, 1], edges replicated at the border; |g| / 4 so a unit step
    // reads 1 on both sides of it. Shifted adds rather than a convolution: each frame's bits
    // then do not depend on how many frames come together (a camera's block read in parts,
    // replayed whole), which a convolution's algorithm choice would not promise.
    const at::Tensor y = luma(frames).add(1.0).mul(0.5);
    const int64_t h = y.size(2), w = y.size(3);
    const at::Tensor p = at::pad(y, {1, 1, 1, 1}, "replicate");
    auto at_shift = [&](int64_t dy, int64_t dx) { return p.narrow(2, dy, h).narrow(3, dx, w); };
    const at::Tensor gx = (at_shift(0, 2) + at_shift(1, 2) * 2 + at_shift(2, 2)) -
                          (at_shift(0, 0) + at_shift(1, 0) * 2 + at_shift(2, 0));
    const at::Tensor gy = (at_shift(2, 0) + at_shift(2, 1) * 2 + at_shift(2, 2)) -
                          (at_shift(0, 0) + at_shift(0, 1) * 2 + at_shift(0, 2));
    const at::Tensor edges = (gx * gx + gy * gy).sqrt().div(4.0).clamp(0, 1);
    return edges.mul(2.0).sub(1.0).expand({-1, 3, -1, -1}).contiguous();
  }
  throw ConfigError(fmt::format("preprocessor '{}' is unknown; expected gray or edges", kind));
}

// ---- capture files ------------------------------------------------------------------------------

// The writer's thread: converts the queued frames to RGB8 and writes them in order.
struct FrameCaptureWriter::Writer {
  // Frames waiting at most: 4 blocks of 12 (a block may come in parts, VaceFrameSource::
  // next_frames_in_parts).
  static constexpr int64_t kMaxQueuedFrames = 48;

  std::FILE* file = nullptr;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<at::Tensor> queue;
  int64_t queued_frames = 0;
  bool writing = false, closing = false;
  std::string failure;  // the first write that failed
  std::thread thread;

  void serve(const std::filesystem::path& path) {
    std::unique_lock lock(mutex);
    for (;;) {
      changed.wait(lock, [&] { return closing || !queue.empty(); });
      if (queue.empty()) return;  // closing, all written
      const at::Tensor frames = std::move(queue.front());
      queue.pop_front();
      queued_frames -= frames.size(0);
      writing = true;
      lock.unlock();
      std::string error;
      if (failure.empty()) {  // written only by this thread
        try {
          const at::Tensor rgb = to_rgb8(frames);
          const size_t bytes = static_cast<size_t>(rgb.numel());
          if (std::fwrite(rgb.data_ptr<uint8_t>(), 1, bytes, file) != bytes ||
              std::fflush(file) != 0)
            error = fmt::format("writing the camera capture '{}' failed: {}", path.string(),
                                std::strerror(errno));
        } catch (const std::exception& e) {
          error =
              fmt::format("writing the camera capture '{}' failed: {}", path.string(), e.what());
        }
      }
      lock.lock();
      if (!error.empty() && failure.empty()) failure = std::move(error);
      writing = false;
      changed.notify_all();
    }
  }
};

FrameCaptureWriter::FrameCaptureWriter(const std::filesystem::path& path, int height, int width)
    : path_(path), height_(height), width_(width), writer_(std::make_unique<Writer>()) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  writer_->file = std::fopen(path.c_str(), "wb");
  if (!writer_->file)
    throw IoError(fmt::format("cannot create the camera capture '{}': {}", path.string(),
                              std::strerror(errno)));
  std::array<char, kCaptureHeader> header{};
  std::memcpy(header.data(), kCaptureMagic, 8);
  const int32_t dims[2] = {height, width};
  std::memcpy(header.data() + 8, dims, 8);
  if (std::fwrite(header.data(), 1, header.size(), writer_->file) != header.size()) {
    std::fclose(writer_->file);
    throw IoError(fmt::format("cannot write the camera capture '{}'", path.string()));
  }
  writer_->thread = std::thread([w = writer_.get(), path] { w->serve(path); });
}

FrameCaptureWriter::~FrameCaptureWriter() {
  {
    const std::lock_guard lock(writer_->mutex);
    writer_->closing = true;
  }
  writer_->changed.notify_all();
  writer_->thread.join();
  std::fclose(writer_->file);
  if (!writer_->failure.empty()) log::warn("{}", writer_->failure);
}

void FrameCaptureWriter::append(const at::Tensor& frames) {
  if (frames.dim() != 4 || frames.size(1) != 3 || frames.size(2) != height_ ||
      frames.size(3) != width_)
    throw Error(fmt::format("camera capture '{}': frames of [{}], the file holds [T, 3, {}, {}]",
                            path_.string(), fmt::join(frames.sizes(), ", "), height_, width_));
  std::unique_lock lock(writer_->mutex);
  writer_->changed.wait(lock, [&] {
    return writer_->queued_frames < Writer::kMaxQueuedFrames || !writer_->failure.empty();
  });
  if (!writer_->failure.empty()) throw IoError(writer_->failure);
  writer_->queue.push_back(frames.device().is_cpu() ? frames : frames.to(at::kCPU));
  writer_->queued_frames += frames.size(0);
  frames_ += frames.size(0);
  writer_->changed.notify_all();
}

void FrameCaptureWriter::flush() {
  std::unique_lock lock(writer_->mutex);
  writer_->changed.wait(lock, [&] { return writer_->queue.empty() && !writer_->writing; });
  if (!writer_->failure.empty()) throw IoError(writer_->failure);
}

CapturedFrameSource::CapturedFrameSource(const std::filesystem::path& path, int height, int width,
                                         int64_t offset)
    : path_(path), height_(height), width_(width), next_(offset) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw IoError(fmt::format("cannot open the captured frames '{}': {}", path.string(),
                              std::strerror(errno)));
  std::array<char, kCaptureHeader> header{};
  const size_t got = std::fread(header.data(), 1, header.size(), f);
  std::fclose(f);
  int32_t dims[2] = {0, 0};
  std::memcpy(dims, header.data() + 8, 8);
  if (got != header.size() || std::memcmp(header.data(), kCaptureMagic, 8) != 0)
    throw FormatError(fmt::format("'{}' is not a LongLive camera capture", path.string()));
  if (dims[0] != height || dims[1] != width)
    throw FormatError(fmt::format("captured frames '{}' are {}x{}, the session is {}x{}",
                                  path.string(), dims[0], dims[1], height, width));
}

int64_t CapturedFrameSource::frames() const {
  std::error_code ec;
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path_, ec));
  return ec ? 0 : std::max<int64_t>(0, size - kCaptureHeader) / (int64_t{height_} * width_ * 3);
}

at::Tensor CapturedFrameSource::next_frames(int64_t count) {
  const int64_t frame_bytes = int64_t{height_} * width_ * 3;
  const int64_t available = frames();
  std::FILE* f = std::fopen(path_.c_str(), "rb");
  if (!f)
    throw IoError(fmt::format("cannot open the captured frames '{}': {}", path_.string(),
                              std::strerror(errno)));
  std::vector<at::Tensor> picked;
  for (int64_t i = 0; i < count; ++i, ++next_) {
    if (next_ < available) {
      at::Tensor frame = at::empty({height_, width_, 3}, at::kByte);
      if (std::fseek(f, static_cast<long>(kCaptureHeader + next_ * frame_bytes), SEEK_SET) != 0 ||
          std::fread(frame.data_ptr<uint8_t>(), 1, static_cast<size_t>(frame_bytes), f) !=
              static_cast<size_t>(frame_bytes)) {
        std::fclose(f);
        throw IoError(fmt::format("reading frame {} of the captured frames '{}' failed", next_,
                                  path_.string()));
      }
      last_ = frame;
    } else if (!last_.defined()) {
      std::fclose(f);
      throw IoError(fmt::format("the captured frames '{}' hold {} frames; frame {} was asked for",
                                path_.string(), available, next_));
    }
    picked.push_back(last_);
  }
  std::fclose(f);
  // As the FFmpeg sources convert (recorder/src/control_input.cpp: rgb_to_signed).
  return at::stack(picked).to(at::kFloat).div(127.5).sub(1.0).movedim(-1, -3).contiguous();
}

// ---- LiveInputs ---------------------------------------------------------------------------------

// A source as the encoders see it: counts the frames used, saves camera frames, preprocesses,
// keeps a thumbnail of the last frame.
struct LiveInputs::Tap final : VaceFrameSource {
  std::shared_ptr<VaceFrameSource> source;
  std::shared_ptr<SharedFrameSource> shared;  // a camera: what `source` reads, for other inputs
  InputSource request;                        // as asked for
  InputSource recorded;                       // as a timeline names it (a camera: its capture file)
  std::unique_ptr<FrameCaptureWriter> capture;
  at::Device device = at::kCPU;
  int64_t used = 0;
  at::Tensor preview;

  at::Tensor next_frames(int64_t count) override { return take(count, false); }
  at::Tensor first_frames(int64_t count) override { return take(count, true); }
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override {
    at::Tensor last;
    source->next_frames_in_parts(count, part, [&](const at::Tensor& frames) {
      last = use(frames);
      part_read(last);
    });
    if (last.defined()) keep_preview(last);
  }
  bool has_frames(int64_t count) const override { return source->has_frames(count); }
  bool filmed() const override { return source->filmed(); }
  Counts counts() const override { return source->counts(); }
  InputSource now() const {
    InputSource s = recorded;
    s.offset += used;
    return s;
  }

 private:
  at::Tensor take(int64_t count, bool first) {
    const bool traced = used == 0 && input_trace();
    const auto taking = std::chrono::steady_clock::now();
    at::Tensor frames = first ? source->first_frames(count) : source->next_frames(count);
    if (traced)
      log::info("input trace: the source gave {} frames in {:.1f} ms", count, ms_since(taking));
    frames = use(frames);
    keep_preview(frames);
    if (traced)
      log::info("input trace: captured, preprocessed, previewed {:.1f} ms after", ms_since(taking));
    return frames;
  }
  // Frames read from the source: saved (a camera), counted, preprocessed.
  at::Tensor use(const at::Tensor& frames) {
    if (capture) capture->append(frames);
    used += frames.size(0);
    if (request.preprocess.empty()) return frames;
    return preprocess_frames(frames.to(device), request.preprocess);
  }
  void keep_preview(const at::Tensor& frames) {
    const at::Tensor last = frames[frames.size(0) - 1].unsqueeze(0).to(at::kFloat);
    const double s = static_cast<double>(kPreviewSide) / std::max(last.size(2), last.size(3));
    const int64_t h = std::max<int64_t>(1, std::lround(last.size(2) * s));
    const int64_t w = std::max<int64_t>(1, std::lround(last.size(3) * s));
    preview = to_rgb8(at::upsample_bilinear2d(last, {h, w}, false))[0];
  }
};

namespace {
// What the input panel says of an input's encoder: nothing for the reference's Wan VAE.
std::string encoder_note(InputEncoderKind kind) {
  return kind == InputEncoderKind::taehv ? " (TAEHV encoder)" : "";
}
}  // namespace

struct LiveInputs::Vace {
  VaceRequest recorded;
  InputEncoderKind encoder = InputEncoderKind::wan;  // the preset's when it was picked
  std::shared_ptr<Tap> tap;                          // null: reference mode
  std::unique_ptr<VaceConditioner> conditioner;
  int64_t fed_block = -1;  // the video's block it was last fed for
  int64_t fed_frames = 0;  // latent frames per block then
};

struct LiveInputs::V2v {
  V2vRequest recorded;
  InputEncoderKind encoder = InputEncoderKind::wan;  // the preset's when it was picked
  std::shared_ptr<Tap> tap;
  std::unique_ptr<VideoToVideo> feeder;
  int64_t fed_block = -1;
  int64_t fed_frames = 0;
};

LiveInputs::LiveInputs(InputOpener opener, std::filesystem::path capture_dir)
    : opener_(std::move(opener)), capture_dir_(std::move(capture_dir)) {}

LiveInputs::~LiveInputs() = default;

std::shared_ptr<SharedFrameSource> LiveInputs::running_camera(const InputSource& source) const {
  for (const Tap* tap :
       {vace_ && vace_->tap ? vace_->tap.get() : nullptr, v2v_ ? v2v_->tap.get() : nullptr})
    if (tap && tap->shared && tap->request.path == source.path &&
        tap->request.format == source.format && tap->counts().error.empty())
      return tap->shared;
  return nullptr;
}

std::shared_ptr<VaceFrameSource> LiveInputs::open_frames(const InputSource& source, int height,
                                                         int width) const {
  if (!opener_.frames)
    throw ConfigError(
        fmt::format("{} cannot be read: this build has no FFmpeg (recorder)", source.describe()));
  return opener_.frames(source, height, width);
}

std::shared_ptr<LiveInputs::Tap> LiveInputs::open_tap(const InputSource& source,
                                                      const Session& session) {
  const int height = session.height, width = session.width;
  if (!source.preprocess.empty()) preprocess_frames(at::zeros({1, 3, 4, 4}), source.preprocess);
  auto tap = std::make_shared<Tap>();
  tap->request = source;
  tap->recorded = source;
  tap->device = session.device;
  switch (source.kind) {
    case InputKind::none:
      throw ConfigError("no input source given (a video file, a camera or an image)");
    case InputKind::frames:
      tap->source =
          std::make_shared<CapturedFrameSource>(source.path, height, width, source.offset);
      break;
    case InputKind::image:
      if (!opener_.image)
        throw ConfigError("images cannot be read: this build has no FFmpeg (recorder)");
      tap->source = std::make_shared<StillFrameSource>(opener_.image(source.path, height, width));
      break;
    case InputKind::video:
      tap->source = open_frames(source, height, width);
      break;
    case InputKind::camera:
      if (auto running = running_camera(source)) {
        // Its reads from here on go to this input too (and to its own capture file).
        tap->shared = std::move(running);
        log::info("{}: already open, read by this input too", source.describe());
      } else {
        tap->shared = std::make_shared<SharedFrameSource>(open_frames(source, height, width));
      }
      tap->source = tap->shared->reader();
      break;
  }
  if (source.kind == InputKind::camera) {
    // The frames used are saved, and a timeline names the file instead of the camera.
    const auto stamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    const auto path = capture_dir_ / fmt::format("camera-{}.rgb8", stamp);
    tap->capture = std::make_unique<FrameCaptureWriter>(path, height, width);
    tap->recorded.kind = InputKind::frames;
    tap->recorded.path = path.string();
    tap->recorded.format.clear();
    tap->recorded.offset = 0;
    log::info("camera '{}': the frames used are saved to {}", source.path, path.string());
  }
  return tap;
}

VaceRequest LiveInputs::set_vace(const VaceRequest& request, SessionFactory& factory,
                                 const Session& session) {
  const int height = session.height, width = session.width;
  if (!factory.vace_available())
    throw ConfigError(fmt::format("VACE is unavailable: {}", factory.vace_status()));
  check_scale(request.scale);
  VaceSettings settings;
  settings.mode = parse_vace_mode(request.mode);
  settings.scale = request.scale;
  if (!request.reference.empty()) {
    if (!opener_.image) throw ConfigError("reference images need FFmpeg (recorder)");
    settings.references = opener_.image(request.reference, height, width);
  }
  if (!request.mask.empty()) {
    if (settings.mode != VaceMode::inpaint)
      throw ConfigError("a VACE mask is for the inpaint mode");
    if (!opener_.mask) throw ConfigError("mask images need FFmpeg (recorder)");
    settings.mask = opener_.mask(request.mask, height, width);
  }
  auto next = std::make_unique<Vace>();
  next->recorded = request;
  const bool traced = input_trace();
  auto opening = std::chrono::steady_clock::now();
  auto trace = [&](const char* what) {
    if (!traced) return;
    log::info("input trace: {} in {:.1f} ms", what, ms_since(opening));
    opening = std::chrono::steady_clock::now();
  };
  if (settings.mode == VaceMode::reference) {
    if (request.source.kind != InputKind::none)
      throw ConfigError("VACE mode reference takes a reference image only, no frame source");
  } else {
    next->tap = open_tap(request.source, session);
    next->recorded.source = next->tap->recorded;
  }
  trace("source opened");
  std::shared_ptr<EncodeWorker> encode_worker = worker(session.device);
  next->encoder = session.preset.input_encoder;
  std::unique_ptr<VaceContextEncoder> encoder = factory.vace_encoder(next->encoder);
  trace("encoder made");
  // The black inactive blocks recorded by an earlier input, where every VACE encode of the
  // session runs on one stream: the kept worker's, or the generator's when nothing is encoded
  // ahead (a worker per input, the A/B, would read them on another stream).
  if (encode_worker || !encode_ahead_turned_on() || !session.device.is_cuda())
    encoder->share_black_inactive(factory.black_inactive_latents());
  next->conditioner = std::make_unique<VaceConditioner>(std::move(encoder), std::move(settings),
                                                        next->tap, std::move(encode_worker));
  trace("conditioner made");
  vace_ = std::move(next);
  trace("the previous input dropped");
  return vace_->recorded;
}

std::shared_ptr<EncodeWorker> LiveInputs::worker(at::Device device) {
  if (env_is("LONGLIVE_ENCODE_WORKER", "input")) return nullptr;
  if (!encode_worker_ || device_of(*encode_worker_) != device)
    encode_worker_ = make_encode_worker(device);
  return encode_worker_;
}

void LiveInputs::clear_vace(StreamGenerator* generator) {
  vace_.reset();
  if (generator) generator->set_vace(std::nullopt);
}

void LiveInputs::set_vace_scale(double scale) {
  check_scale(scale);
  if (!vace_) throw ConfigError("VACE scale: no VACE input is set");
  vace_->conditioner->set_scale(scale);
  vace_->recorded.scale = scale;
}

V2vRequest LiveInputs::set_v2v(const V2vRequest& request, SessionFactory& factory,
                               const Session& session) {
  check_strength(request.strength);
  auto next = std::make_unique<V2v>();
  next->recorded = request;
  next->tap = open_tap(request.source, session);
  next->recorded.source = next->tap->recorded;
  next->encoder = session.preset.input_encoder;
  next->feeder =
      factory.video_to_video(next->encoder, request.strength, next->tap, worker(session.device));
  v2v_ = std::move(next);
  return v2v_->recorded;
}

void LiveInputs::clear_v2v(StreamGenerator* generator) {
  v2v_.reset();
  if (generator) generator->set_v2v(std::nullopt);
}

void LiveInputs::set_v2v_strength(double strength) {
  check_strength(strength);
  if (!v2v_) throw ConfigError("video-to-video strength: no video-to-video input is set");
  v2v_->feeder->set_strength(strength);
  v2v_->recorded.strength = strength;
}

bool LiveInputs::has_vace() const { return vace_ != nullptr; }
bool LiveInputs::has_v2v() const { return v2v_ != nullptr; }

std::optional<VaceRequest> LiveInputs::vace_now() const {
  if (!vace_) return std::nullopt;
  VaceRequest r = vace_->recorded;
  if (vace_->tap) r.source = vace_->tap->now();
  return r;
}

std::optional<V2vRequest> LiveInputs::v2v_now() const {
  if (!v2v_) return std::nullopt;
  V2vRequest r = v2v_->recorded;
  r.source = v2v_->tap->now();
  return r;
}

namespace {
// The encoder passes an input may take: a file's (the encoder's rule) and a camera's (one group
// of frames per pass).
constexpr std::array<int64_t, 2> kWarmedGroupsPerPass{0, 1};

// Runs `work` on `worker` (its thread and stream) and waits for it on the GPU too; in place on
// this thread without one.
void run_on(const std::shared_ptr<EncodeWorker>& worker, at::Device device,
            std::function<at::Tensor()> work) {
  if (!worker) {
    work();
  } else {
    EncodeAhead on_worker(device, worker);
    on_worker.launch(std::move(work));
    on_worker.take();
  }
  wait_for_current_stream(device);
}
}  // namespace

double LiveInputs::warm(SessionFactory& factory, const Session& session) {
  const auto began = std::chrono::steady_clock::now();
  const at::Device device = session.device;
  const int64_t latent_frames = session.generator->options().frames_per_block;
  const auto pixels = at::TensorOptions().dtype(at::kFloat).device(device);
  auto black_block = [&](int64_t index, int64_t temporal_scale) {
    return at::zeros({input_block_frames(index, latent_frames, temporal_scale), 3, session.height,
                      session.width},
                     pixels);
  };
  const std::shared_ptr<EncodeWorker> on = worker(device);
  // Both input kinds run the same shared encoder on this worker: readying one readies both.
  if (factory.vace_available()) {
    std::shared_ptr<VaceContextEncoder> encoder =
        factory.vace_encoder(session.preset.input_encoder);
    // As set_vace shares it: the blocks encoded here are the ones the first input takes.
    if (on || !encode_ahead_turned_on() || !device.is_cuda())
      encoder->share_black_inactive(factory.black_inactive_latents());
    run_on(on, device, [&, encoder] {
      at::Tensor context;
      // A file's passes (a call's frames at once), then a camera's (a group per pass,
      // VaceFrameSource::filmed): their convolutions have other shapes. The second video takes
      // the black inactive blocks the first recorded.
      for (const int64_t groups : kWarmedGroupsPerPass) {
        encoder->reset();
        encoder->set_frame_groups_per_pass(groups);
        for (int64_t block = 0; block < 2; ++block)
          context = encoder->encode(black_block(block, encoder->temporal_scale()), {});
      }
      return context;
    });
    return ms_since(began);
  }
  if (session.preset.input_encoder == InputEncoderKind::taehv) {
    const std::shared_ptr<const TaehvEncoder> taehv = factory.taehv_encoder();
    run_on(on, device, [&, taehv] {
      at::Tensor latents;
      for (const int64_t groups : kWarmedGroupsPerPass) {
        TaehvEncoder::Stream stream;
        for (int64_t block = 0; block < 2; ++block)
          latents = taehv->encode_next(black_block(block, TaehvEncoder::kTimeDownscale), stream,
                                       groups * TaehvEncoder::kTimeDownscale);
      }
      return latents;
    });
    return ms_since(began);
  }
  std::shared_ptr<WanVaeEncoder> video = factory.video_encoder();
  run_on(on, device, [&, video] {
    at::Tensor latents;
    for (const int64_t groups : kWarmedGroupsPerPass) {
      WanVaeEncoder::Stream stream;
      for (int64_t block = 0; block < 2; ++block)
        latents = video->encode_next(
            black_block(block, video->config().temporal_scale()).unsqueeze(0), stream, groups);
    }
    return latents;
  });
  return ms_since(began);
}

void LiveInputs::reset() {
  if (vace_) {
    vace_->conditioner->reset();
    vace_->fed_block = -1;
  }
  if (v2v_) {
    v2v_->feeder->reset();
    v2v_->fed_block = -1;
  }
}

void LiveInputs::flush_captures() const {
  for (const Tap* tap :
       {vace_ && vace_->tap ? vace_->tap.get() : nullptr, v2v_ ? v2v_->tap.get() : nullptr})
    if (tap && tap->capture) tap->capture->flush();
}

std::vector<EventKind> LiveInputs::before_block(StreamGenerator& generator, int64_t block,
                                                std::vector<std::string>& messages) {
  std::vector<EventKind> dropped;
  // A source fails by throwing, or (a camera unplugged) by reporting it while it repeats its last
  // frame: then it is dropped before the next block, which runs without it.
  auto guard = [&](auto& input, const char* what, EventKind off, auto feed, auto clear) {
    if (!input) return;
    std::string failure = input->tap ? input->tap->counts().error : std::string();
    if (failure.empty()) {
      try {
        feed();
        return;
      } catch (const std::exception& e) {
        if (is_oom(e)) throw;
        failure = e.what();
      }
    }
    messages.push_back(fmt::format("{} input {} failed: {}; the video goes on without it", what,
                                   input->tap ? input->tap->request.describe() : "", failure));
    log::warn("{}", messages.back());
    clear();
    dropped.push_back(off);
  };
  // The block made again after it was given up: what it was fed the first time (unless a
  // preset change in between made blocks of another length: then its own frames, read anew).
  const int64_t frames = generator.options().frames_per_block;
  auto feed = [&](auto& input, auto& feeder) {
    if (input->fed_block == block && input->fed_frames == frames) {
      feeder->feed_again(generator);
      return;
    }
    feeder->before_block(generator);
    input->fed_block = block;
    input->fed_frames = frames;
  };
  guard(
      vace_, "VACE", EventKind::vace_off, [&] { feed(vace_, vace_->conditioner); },
      [&] { clear_vace(&generator); });
  guard(
      v2v_, "video-to-video", EventKind::v2v_off, [&] { feed(v2v_, v2v_->feeder); },
      [&] { clear_v2v(&generator); });
  return dropped;
}

bool LiveInputs::waits_for_frames(const StreamGenerator& generator, int64_t block) const {
  const int64_t frames = generator.options().frames_per_block;
  auto waits = [&](const auto& input, const auto& feeder) {
    if (!input || (input->fed_block == block && input->fed_frames == frames)) return false;
    return feeder->waits_for_frames(frames);
  };
  return (vace_ && waits(vace_, vace_->conditioner)) || (v2v_ && waits(v2v_, v2v_->feeder));
}

InputStatus LiveInputs::status(const SessionFactory* factory) const {
  InputStatus s;
  if (factory) {
    s.vace_available = factory->vace_available();
    s.vace_status = factory->vace_status();
  }
  const SharedFrameSource* camera_counted = nullptr;  // one camera read by both: counted once
  auto count = [&](const std::shared_ptr<Tap>& tap) {
    if (!tap) return;
    s.frames_used += tap->used;
    if (tap->preview.defined()) s.preview = tap->preview;
    if (tap->shared && tap->shared.get() == camera_counted) return;
    camera_counted = tap->shared.get();
    const auto c = tap->counts();
    s.dropped += c.dropped;
    s.repeated += c.repeated;
    if (!c.interrupted.empty()) s.interrupted = c.interrupted;
    if (!c.framing.empty()) s.framing = c.framing;
  };
  if (v2v_) {
    s.v2v = v2v_->tap->request.describe() + encoder_note(v2v_->encoder);
    s.v2v_strength = v2v_->recorded.strength;
    count(v2v_->tap);
  }
  if (vace_) {
    s.vace = fmt::format("{}: {}{}", vace_->recorded.mode,
                         vace_->tap ? vace_->tap->request.describe()
                                    : fmt::format("image '{}'", vace_->recorded.reference),
                         encoder_note(vace_->encoder));
    s.vace_scale = vace_->recorded.scale;
    count(vace_->tap);  // VACE's frame is the preview when both run
  }
  return s;
}

}  // namespace longlive
