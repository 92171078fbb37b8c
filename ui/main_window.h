#pragma once
// The studio window: prompt editor, transport, seed/resolution/preset/model controls, live video
// view with timing overlay, error banner and status bar. The engine runs on its own thread; the
// UI only posts commands and receives frames and stats through queued signals.
#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QMainWindow>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTimer>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "error_banner.h"
#include "followed_inputs.h"
#include "input_panel.h"
#include "longlive/control.h"
#include "longlive/engine.h"
#include "longlive/midi.h"
#include "longlive/osc_server.h"
#ifdef LONGLIVE_WITH_ALSA
#include "longlive/midi_input.h"
#endif
#include "longlive/preset.h"
#include "longlive/timeline.h"
#include "model_setup_panel.h"
#include "perform_panel.h"
#include "recording_controls.h"
#include "video_out_controls.h"
#include "video_view.h"

namespace longlive::ui {

class PromptEdit : public QPlainTextEdit {
  Q_OBJECT
 public:
  using QPlainTextEdit::QPlainTextEdit;
 signals:
  void submitted(const QString& text);      // Enter
  void cut_submitted(const QString& text);  // Ctrl+Enter: always a hard cut

 protected:
  void keyPressEvent(QKeyEvent* event) override;

 private:
  QStringList history_;
  int history_pos_ = -1;
};

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  // Typing pauses this long before the prompt box and the blend rows are encoded ahead.
  static constexpr int kPrefetchIdleMs = 300;

  MainWindow(QString presets_dir, bool tiny_model);
  ~MainWindow() override;

  // Test access.
  PromptEdit* prompt_edit() const { return prompt_; }
  QPushButton* start_button() const { return start_; }
  QPushButton* stop_button() const { return stop_; }
  QComboBox* preset_box() const { return presets_; }
  VideoView* view() const { return view_; }
  bool error_visible() const { return banner_->isVisible(); }
  QString error_text() const { return banner_->text(); }
  ErrorBanner* banner() const { return banner_; }
  ModelSetupPanel* model_panel() const { return model_panel_; }
  RecordingControls* recording() const { return recording_; }
  VideoOutControls* video_out() const { return video_out_; }
  QCheckBox* tiny_box() const { return tiny_; }
  QComboBox* resolution_box() const { return resolution_; }
  QSpinBox* gpus_box() const { return gpus_; }
  EngineStats engine_stats() const;
  // Whether the window asks the engine for host copies of the frames: while it records or sends
  // video out, or when the view cannot take frames GPU to GPU (no CUDA-GL interop). A CPU engine
  // makes its frames on the host whatever this says.
  bool host_frames_requested() const { return host_frames_requested_; }
  // The model folder button's effect without its dialog (also used by the setup panel).
  void set_model_folder(const QString& dir);
  // The 1.3B model with random weights and text-seeded prompt embeddings instead of a model
  // folder (the bench's `--random full`, through the same session factory), unless the tiny
  // model is checked. For measuring the studio on a GPU without checkpoints.
  void use_random_full_model(bool on);
  // An engine error as the user sees it; out-of-memory offers the low_memory preset.
  void show_engine_error(const QString& message);
  TransitionControls* transition_controls() const { return transition_; }
  BlendList* blend_list() const { return blend_; }
  LoraFaders* lora_faders() const { return loras_; }
  InputPanel* input_panel() const { return inputs_; }
  // A remote command (OSC; MIDI bindings) as if the matching control had been used. UI thread.
  void apply_control(const ControlCommand& command);
  int osc_port() const;  // 0 when OSC is off (or its port could not be opened)
  MidiBindings& midi_bindings() { return midi_; }
  // A MIDI event as if it came from the input (the bindings decide what it does). Any thread.
  void midi_event(const MidiEvent& event);
  // Timeline of the last stopped session and where it was written ("" before the first stop).
  const Timeline& last_timeline() const { return last_timeline_; }
  QString last_timeline_path() const { return last_timeline_path_; }
  // File menu actions without their dialogs (the autotest drives these).
  bool save_prompt_set_to(const QString& path);
  bool load_prompt_set_from(const QString& path);
  bool play_timeline_from(const QString& path);
  // Prompts sent to Engine::prefetch_prompt after typing paused (prompt box and blend rows).
  int64_t prompts_prefetched() const { return prompts_prefetched_; }

 signals:
  void engine_stats_changed(const longlive::EngineStats& stats);  // each update, on the UI thread

 protected:
  void keyPressEvent(QKeyEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void submit(const QString& prompt, bool cut = false);
  void submit_mix(const PromptMix& mix, bool cut);
  void timeline_finished(const Timeline& timeline);
  void build_menu();
  void stop();
  void choose_model_folder();
  void show_error(const QString& message);
  void apply_preset(int index);
  // Makes the engine when there is none. `quiet`: for work the user did not ask for (a
  // prefetch): no error banner or model panel, just false.
  bool ensure_engine(bool quiet = false);
  // Prefetch while typing: once typing has paused for kPrefetchIdleMs, the prompt box's text and
  // the blend rows' texts go to Engine::prefetch_prompt (its prompt cache encodes them in the
  // background), so Enter on them finds the embeddings ready. Each field's text is sent once;
  // empty text is not. Before the first start this makes the engine, which loads the model.
  void prefetch_typed_prompts();
  // Texts the engine already has (sent or submitted): not sent again.
  void remember_prefetched(const PromptMix& mix);
  // Tearing an engine down joins its worker, which may be in the middle of a block on the GPU:
  // done on a helper thread, so the window never waits for it. A retired engine's callbacks are
  // dropped (engine_generation_). Joined before the next engine starts (one session's GPU
  // memory at a time) and when the window goes.
  void retire_engine();
  void join_retired_engines();
  void update_status();
  void update_host_frames();  // host_frames_requested(), passed on to the engine

  QString presets_dir_;

  PromptEdit* prompt_ = nullptr;
  TransitionControls* transition_ = nullptr;
  BlendList* blend_ = nullptr;
  LoraFaders* loras_ = nullptr;
  InputPanel* inputs_ = nullptr;
  FollowedInputs followed_inputs_;  // opened again by a new engine
  Timeline last_timeline_;
  QString last_timeline_path_;
  QPushButton *start_ = nullptr, *pause_ = nullptr, *stop_ = nullptr;
  QSpinBox* seed_ = nullptr;
  QCheckBox* random_seed_ = nullptr;
  QComboBox* resolution_ = nullptr;
  QSpinBox* gpus_ = nullptr;  // the stream's ranks (docs/multi-gpu.md)
  QComboBox* presets_ = nullptr;
  QCheckBox* tiny_ = nullptr;
  bool random_full_ = false;
  bool host_frames_requested_ = true;
  QLabel* model_label_ = nullptr;
  ErrorBanner* banner_ = nullptr;
  ModelSetupPanel* model_panel_ = nullptr;
  RecordingControls* recording_ = nullptr;
  VideoOutControls* video_out_ = nullptr;
  QString last_prompt_;  // restarted after switching to low_memory
  QLabel* status_ = nullptr;
  VideoView* view_ = nullptr;
  QString model_folder_;
  ModelSpec engine_model_;  // the model engine_ runs (the Wan VAE export looks beside it)
  std::unique_ptr<Engine> engine_;
  std::vector<std::thread> retired_engines_;
  std::atomic<uint64_t> engine_generation_{0};  // bumped when engine_ is retired
  bool running_ = false;
  bool paused_ = false;
  EngineStats stats_;
  DeviceMemory memory_;
  QTimer prefetch_timer_;  // single shot, restarted by every key
  // The text last sent per field (prompt box, then the blend rows), for the engine generation
  // that received it.
  std::array<QString, 1 + BlendList::kRows> prefetched_;
  uint64_t prefetched_generation_ = 0;
  int64_t prompts_prefetched_ = 0;
  // OSC on UDP (QSettings osc/port, default 9000; 0 = off). Its receive thread posts each command
  // to the UI thread (apply_control). Last member: stopped before anything it reaches goes.
  std::unique_ptr<OscServer> osc_;
  // MIDI: bindings (QSettings midi/bindings, JSON) and, where the ALSA sequencer exists, the
  // "LongLive Studio" input port. Learned bindings are saved at once.
  MidiBindings midi_;
  void arm_midi_learn(const MidiTarget& target);
  void save_midi_bindings();
#ifdef LONGLIVE_WITH_ALSA
  std::unique_ptr<MidiInput> midi_in_;
#endif
};

}  // namespace longlive::ui
