#pragma once
// bench --vace-input-latency: how long a camera picked while the video runs takes to condition
// what is shown (#17's "camera -> first conditioned frame"), measured on the studio's Engine.
#include <nlohmann/json.hpp>
#include <string>

#include "longlive/preset.h"
#include "longlive/session.h"
#include "summary.h"

namespace longlive::cli {

struct InputLatency {
  int picks = 0;
  // Picked (Engine::set_vace) -> first frame of the first conditioned block ready
  // (EngineStats::last_input_ms): the first pick (VACE graphs captured, the encoder's first
  // convolutions) and the later ones.
  double first_ms = 0;
  Summary later;
  // Of the later picks' latency: the engine thread applying the pick (EngineStats::
  // last_input_open_ms).
  Summary later_open;
  // The engine's block times (generation, decode of the block before on its own stream, frames
  // handed out) without the camera and with it, after each pick's first two blocks.
  Summary plain_block, camera_block;
  // Where the engine thread's time went, per block, in the same blocks (EngineStats::ThreadTime).
  struct ThreadShare {
    double inputs_ms = 0, dit_wait_ms = 0, decode_wait_ms = 0, deliver_ms = 0, block_ms = 0;
  };
  ThreadShare plain_thread, camera_thread;
  // Each pick: its latency, the opening, and the engine thread's time from the pick to its first
  // conditioned frame (sums over the blocks in between, the given-up one included).
  struct Pick {
    double latency_ms = 0, open_ms = 0;
    int64_t blocks = 0;
    ThreadShare thread;                                    // sums, not per block
    int64_t graph_captures = 0, graph_eager_forwards = 0;  // DiT forwards in those blocks
  };
  std::vector<Pick> each;
  // With a camera paced at `camera_fps` (0: frames at once): each conditioned block after a
  // pick's first, from the camera filming the last of its control frames to its first frame
  // handed out (what a performer sees of their own movement), over all picks.
  double camera_fps = 0;
  Summary camera_to_screen;
  // Picks at a random moment of a block (seeded: a uniform fraction of a plain block's median
  // after a block ended) instead of as a block begins.
  bool at_random_moments = false;
  // The synthetic input passed for a file (VaceFrameSource::filmed false): a call's frames in
  // one encoder pass on a GPU, instead of a camera's group of 4 frames per pass.
  bool as_file = false;
};

// Runs an Engine on `model` (the caller's random model; VACE weights needed) with a synthetic
// camera (random frames, handed out at once, as a capture ring's latest frames are; or, with
// `camera_fps` > 0, filmed at that rate from its opening, as LiveVideoSource hands them out)
// picked `picks` times, each pick after blocks without it (as a block begins, or with
// `at_random_moments` at a random moment of one; with `as_file` it passes for a file, for the
// encoder's passes). Frames captured are saved under a temporary folder, as the studio saves
// them, and removed after.
InputLatency measure_input_latency(const ModelSpec& model, const Preset& preset, int height,
                                   int width, int picks, double camera_fps = 0,
                                   bool at_random_moments = false, bool as_file = false);

nlohmann::json to_json(const InputLatency& latency);
std::string describe(const InputLatency& latency);

}  // namespace longlive::cli
