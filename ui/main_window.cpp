#include "main_window.h"

#include <QCloseEvent>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QMenu>
#include <QMenuBar>
#include <QMetaObject>
#include <QRandomGenerator>
#include <QSettings>
#include <QStandardPaths>
#include <QStatusBar>
#include <QVBoxLayout>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "longlive/control_input.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive::ui {

void PromptEdit::keyPressEvent(QKeyEvent* event) {
  const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
  if (enter && !(event->modifiers() & Qt::ShiftModifier)) {
    const QString text = toPlainText();
    if (!text.trimmed().isEmpty() && (history_.isEmpty() || history_.back() != text))
      history_.push_back(text);
    history_pos_ = -1;
    if (event->modifiers() & Qt::ControlModifier)
      emit cut_submitted(text);
    else
      emit submitted(text);
    return;
  }
  if ((event->key() == Qt::Key_Up || event->key() == Qt::Key_Down) && !history_.isEmpty() &&
      (toPlainText().isEmpty() || history_pos_ >= 0)) {
    if (history_pos_ < 0) history_pos_ = static_cast<int>(history_.size());
    history_pos_ = std::clamp(history_pos_ + (event->key() == Qt::Key_Up ? -1 : 1), 0,
                              static_cast<int>(history_.size()) - 1);
    setPlainText(history_[history_pos_]);
    return;
  }
  QPlainTextEdit::keyPressEvent(event);
}

MainWindow::MainWindow(QString presets_dir, bool tiny_model)
    : presets_dir_(std::move(presets_dir)) {
  setWindowTitle("LongLive Studio");
  QSettings settings("LongLive", "Studio");
  model_folder_ = settings.value("model_folder").toString();

  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);
  banner_ = new ErrorBanner;
  layout->addWidget(banner_);
  model_panel_ = new ModelSetupPanel;
  layout->addWidget(model_panel_);

  view_ = new VideoView;
  layout->addWidget(view_, 1);

  prompt_ = new PromptEdit;
  prompt_->setPlaceholderText(
      "Describe the video, press Enter to start or change it live (transition), Ctrl+Enter for a "
      "hard cut (Shift+Enter: new line)");
  prompt_->setMaximumHeight(70);
  transition_ = new TransitionControls;
  auto* prompt_row = new QHBoxLayout;
  prompt_row->addWidget(prompt_, 1);
  prompt_row->addWidget(transition_);
  layout->addLayout(prompt_row);
  blend_ = new BlendList;
  layout->addWidget(blend_);
  loras_ = new LoraFaders;
  layout->addWidget(loras_);
  inputs_ = new InputPanel;
  layout->addWidget(inputs_);

  auto* controls = new QHBoxLayout;
  start_ = new QPushButton("Start");
  pause_ = new QPushButton("Pause");
  stop_ = new QPushButton("Stop");
  seed_ = new QSpinBox;
  seed_->setRange(0, 1'000'000'000);
  seed_->setValue(settings.value("seed", 42).toInt());
  seed_->setPrefix("seed ");
  random_seed_ = new QCheckBox("random");
  resolution_ = new QComboBox;
  for (const char* r : {"480x832", "832x480", "512x512", "64x64", "128x128"})
    resolution_->addItem(r);
  resolution_->setCurrentText(
      settings.value("resolution", tiny_model ? "64x64" : "480x832").toString());
  // One stream on several GPUs (sequence parallelism, docs/multi-gpu.md): rank r on CUDA device
  // r (on the CPU every rank shares it). A new number applies at the next start.
  gpus_ = new QSpinBox;
  gpus_->setRange(1, 8);
  gpus_->setPrefix("GPUs ");
  gpus_->setValue(std::clamp(settings.value("engine/gpus", 1).toInt(), 1, 8));
  gpus_->setToolTip(
      "Run the stream on this many GPUs of this machine (the same video as on one). Applies at "
      "the next start.");
  presets_ = new QComboBox;
  try {
    for (const auto& p : load_presets(presets_dir_.toStdString())) {
      presets_->addItem(QString::fromStdString(p.name));
      presets_->setItemData(presets_->count() - 1,
                            QString::fromStdString(p.description) +
                                (p.quality_preserving ? "" : "\n(trades quality for speed)"),
                            Qt::ToolTipRole);
    }
  } catch (const std::exception& e) {
    show_error(QString("presets: %1").arg(e.what()));
  }
  tiny_ = new QCheckBox("tiny random model (test)");
  tiny_->setChecked(tiny_model);
  auto* model_button = new QPushButton("Model folder…");
  model_label_ = new QLabel(model_folder_.isEmpty() ? "no model folder" : model_folder_);
  recording_ = new RecordingControls(this, [this] {
    const QStringList size = resolution_->currentText().split('x');
    return SessionInfo{
        tiny_->isChecked() ? QString("tiny random model (test)") : QDir(model_folder_).dirName(),
        presets_->currentText(), static_cast<uint64_t>(seed_->value()), size.value(0).toInt(),
        size.value(1).toInt()};
  });
  recording_->set_latents_source([this] {
    SessionLatents latents;
    if (engine_) {
      KeptLatents kept = engine_->kept_latents();
      latents.blocks = std::move(kept.blocks);
      latents.dropped_latent_frames = kept.dropped_latent_frames;
    }
    latents.model = engine_model_;
    return latents;
  });
  for (QWidget* w : std::initializer_list<QWidget*>{
           start_, pause_, stop_, seed_, random_seed_, resolution_, gpus_, presets_, tiny_,
           model_button, model_label_, recording_->record_button(), recording_->export_button()})
    controls->addWidget(w);
  controls->addStretch(1);
  layout->addLayout(controls);
  setCentralWidget(central);
  status_ = new QLabel;
  statusBar()->addWidget(status_, 1);
  statusBar()->addPermanentWidget(recording_->status_label());
  connect(recording_, &RecordingControls::error, this, &MainWindow::show_error);
  connect(recording_->record_button(), &QPushButton::toggled, view_, &VideoView::set_recording);
  // Host copies of the frames only while something on the host needs them.
  connect(recording_->record_button(), &QPushButton::toggled, this,
          &MainWindow::update_host_frames);
  view_->set_interop_lost_handler([this] { update_host_frames(); });
  connect(model_panel_, &ModelSetupPanel::choose_folder_requested, this,
          &MainWindow::choose_model_folder);
  connect(model_panel_, &ModelSetupPanel::tiny_requested, this, [this] {
    tiny_->setChecked(true);
    model_panel_->hide();
  });
  if (!tiny_model &&
      (model_folder_.isEmpty() || !missing_model_files(model_folder_.toStdString()).empty()))
    model_panel_->show_for(model_folder_, missing_model_files(model_folder_.toStdString()));

  // Prefetch while typing: every change restarts the timer; it fires once typing has paused.
  prefetch_timer_.setSingleShot(true);
  prefetch_timer_.setInterval(kPrefetchIdleMs);
  connect(&prefetch_timer_, &QTimer::timeout, this, &MainWindow::prefetch_typed_prompts);
  connect(prompt_, &QPlainTextEdit::textChanged, &prefetch_timer_, qOverload<>(&QTimer::start));
  connect(blend_, &BlendList::row_text_edited, &prefetch_timer_, qOverload<>(&QTimer::start));
  connect(prompt_, &PromptEdit::submitted, this, [this](const QString& p) { submit(p); });
  connect(prompt_, &PromptEdit::cut_submitted, this, [this](const QString& p) { submit(p, true); });
  connect(blend_, &BlendList::blend_requested, this,
          [this](const PromptMix& mix) { submit_mix(mix, false); });
  connect(blend_, &BlendList::recent_chosen, this, [this](const QString& p) {
    prompt_->setPlainText(p);
    prompt_->setFocus();
  });
  connect(loras_, &LoraFaders::load_requested, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Load style LoRA", model_folder_,
                                                      "LoRA (*.safetensors *.pt *.pth)");
    if (path.isEmpty() || !ensure_engine()) return;
    engine_->load_lora(path.toStdString());  // its fader appears with the next stats
  });
  connect(loras_, &LoraFaders::strength_changed, this, [this](const QString& name, double s) {
    if (engine_) engine_->set_lora_strength(name.toStdString(), s);
  });
  connect(loras_, &LoraFaders::bake_requested, this, [this] {
    if (engine_) engine_->bake_loras();  // "baked at" shows with the next stats
  });
  connect(loras_, &LoraFaders::unload_requested, this, [this] {
    if (engine_) engine_->unload_loras();  // the faders go with the next stats
  });
  // Inputs (docs/vace.md): an input opens in the engine (errors come back to the banner); the
  // sliders move a running input only.
  // They are kept (followed_inputs_): a new engine (resolution, model, GPUs) opens them again.
  connect(inputs_, &InputPanel::vace_requested, this, [this](const VaceRequest& r) {
    followed_inputs_.vace_requested(r);
    if (engine_)
      engine_->set_vace(r);
    else
      ensure_engine();  // a new engine opens the followed inputs
  });
  connect(inputs_, &InputPanel::v2v_requested, this, [this](const V2vRequest& r) {
    followed_inputs_.v2v_requested(r);
    if (engine_)
      engine_->set_v2v(r);
    else
      ensure_engine();  // a new engine opens the followed inputs
  });
  connect(inputs_, &InputPanel::vace_cleared, this, [this] {
    followed_inputs_.vace_cleared();
    if (engine_) engine_->clear_vace();
  });
  connect(inputs_, &InputPanel::v2v_cleared, this, [this] {
    followed_inputs_.v2v_cleared();
    if (engine_) engine_->clear_v2v();
  });
  // "Draw mask": a rectangle dragged over the video becomes an inpainting mask image of the
  // frame's size, saved beside the camera captures (a timeline names it, so render replays it).
  connect(inputs_, &InputPanel::mask_drawing_toggled, view_, &VideoView::set_mask_drawing);
  // Kernels are sampled only while the overlay's Kernels tab is on screen (CUPTI attaches the
  // first time and stays).
  connect(view_, &VideoView::kernels_view_changed, this, [this](bool shown) {
    if (engine_) engine_->set_kernel_sampling(shown);
  });
  connect(view_, &VideoView::mask_rect_drawn, this, [this](const QRectF& fraction) {
    const QSize size = view_->current().size;
    const QString dir =
        QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/masks";
    const QString path =
        dir + QDateTime::currentDateTime().toString("/'mask-'yyyyMMdd-HHmmss-zzz'.png'");
    if (!QDir().mkpath(dir) || !rectangle_mask(fraction, size).save(path)) {
      show_error(QString("The drawn mask could not be saved to %1").arg(path));
      return;
    }
    inputs_->set_mask(path);  // releases "Draw mask", which ends the drawing
  });
  connect(inputs_, &InputPanel::vace_scale_changed, this, [this](double scale) {
    followed_inputs_.vace_scale_moved(scale);
    if (engine_ && !stats_.inputs.vace.empty()) engine_->set_vace_scale(scale);
  });
  connect(inputs_, &InputPanel::v2v_strength_changed, this, [this](double strength) {
    followed_inputs_.v2v_strength_moved(strength);
    if (engine_ && !stats_.inputs.v2v.empty()) engine_->set_v2v_strength(strength);
  });
  // OSC: on by default on UDP 9000 (QSettings osc/port; 0 turns it off). A port in use (a second
  // studio) is reported in the log, not as an error: the studio works without it.
  if (const int port = settings.value("osc/port", kDefaultOscPort).toInt(); port > 0) {
    try {
      osc_ = std::make_unique<OscServer>(port, [this](const ControlCommand& c) {
        QMetaObject::invokeMethod(
            this, [this, c] { apply_control(c); }, Qt::QueuedConnection);
      });
    } catch (const std::exception& e) {
      log::warn("OSC is off: {}", e.what());
    }
  }
  // MIDI: saved bindings, the sequencer port where there is one, learn from the faders and rows.
  try {
    const QString saved = settings.value("midi/bindings").toString();
    if (!saved.isEmpty()) midi_.load_json(saved.toStdString(), "settings midi/bindings");
  } catch (const std::exception& e) {
    log::warn("MIDI bindings not restored: {}", e.what());
  }
#ifdef LONGLIVE_WITH_ALSA
  try {
    midi_in_ = std::make_unique<MidiInput>([this](const MidiEvent& e) { midi_event(e); });
  } catch (const std::exception& e) {
    log::info("MIDI input is off: {}", e.what());
  }
#endif
  connect(loras_, &LoraFaders::midi_learn_requested, this, [this](const QString& name) {
    arm_midi_learn({MidiTarget::Kind::lora, name.toStdString(), 0});
  });
  connect(loras_, &LoraFaders::bake_midi_learn_requested, this, [this] {
    arm_midi_learn({MidiTarget::Kind::bake, {}, 0});
  });
  for (int i = 0; i < BlendList::kRows; ++i) {
    QLineEdit* row = blend_->row_text(i);
    row->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(row, &QWidget::customContextMenuRequested, this, [this, row, i](const QPoint& at) {
      std::unique_ptr<QMenu> menu(row->createStandardContextMenu());
      menu->addSeparator();
      menu->addAction("MIDI learn (a key fires this prompt)", [this, i] {
        arm_midi_learn({MidiTarget::Kind::prompt, {}, i});
      });
      menu->exec(row->mapToGlobal(at));
    });
  }
  connect(blend_, &BlendList::save_set_requested, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, "Save prompt set", {}, "JSON (*.json)");
    if (!path.isEmpty()) save_prompt_set_to(path);
  });
  connect(blend_, &BlendList::load_set_requested, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Load prompt set", {}, "JSON (*.json)");
    if (!path.isEmpty()) load_prompt_set_from(path);
  });
  build_menu();
  connect(start_, &QPushButton::clicked, this, [this] { submit(prompt_->toPlainText()); });
  connect(pause_, &QPushButton::clicked, this, [this] {
    if (!engine_ || !running_) return;
    paused_ ? engine_->resume() : engine_->pause();
    paused_ = !paused_;
    pause_->setText(paused_ ? "Resume" : "Pause");
  });
  connect(stop_, &QPushButton::clicked, this, &MainWindow::stop);
  connect(presets_, &QComboBox::currentIndexChanged, this, &MainWindow::apply_preset);
  connect(model_button, &QPushButton::clicked, this, &MainWindow::choose_model_folder);
  connect(resolution_, &QComboBox::currentTextChanged, this, [this] {
    retire_engine();
    running_ = false;
  });
  connect(tiny_, &QCheckBox::toggled, this, [this] {
    retire_engine();
    running_ = false;
  });
  connect(gpus_, &QSpinBox::valueChanged, this, [this](int gpus) {
    QSettings("LongLive", "Studio").setValue("engine/gpus", gpus);
    retire_engine();  // the next start opens the new number of ranks
    running_ = false;
  });
  restoreGeometry(settings.value("geometry").toByteArray());
  const int preset_index = presets_->findText(settings.value("preset", "balanced").toString());
  if (preset_index >= 0) presets_->setCurrentIndex(preset_index);
  update_status();
}

MainWindow::~MainWindow() {
  osc_.reset();  // no command arrives while the rest goes
#ifdef LONGLIVE_WITH_ALSA
  midi_in_.reset();
#endif
  engine_.reset();
  join_retired_engines();
}

void MainWindow::retire_engine() {
  if (!engine_) return;
  ++engine_generation_;
  retired_engines_.emplace_back([old = std::move(engine_)]() mutable { old.reset(); });
}

void MainWindow::join_retired_engines() {
  for (std::thread& t : retired_engines_) t.join();
  retired_engines_.clear();
}

EngineStats MainWindow::engine_stats() const { return stats_; }

void MainWindow::keyPressEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_F1) {
    view_->set_overlay_visible(!view_->overlay_visible());
  } else if (event->key() == Qt::Key_F11) {
    isFullScreen() ? showNormal() : showFullScreen();
  } else {
    QMainWindow::keyPressEvent(event);
  }
}

void MainWindow::closeEvent(QCloseEvent* event) {
  QSettings settings("LongLive", "Studio");
  settings.setValue("geometry", saveGeometry());
  settings.setValue("preset", presets_->currentText());
  settings.setValue("resolution", resolution_->currentText());
  settings.setValue("seed", seed_->value());
  settings.setValue("model_folder", model_folder_);
  engine_.reset();
  event->accept();
}

void MainWindow::show_error(const QString& message) { banner_->show_message(message); }

void MainWindow::show_engine_error(const QString& message) {
  // A fatal error also reports state "error", which clears running_ (on_stats); a rejected prompt
  // or blend leaves the video running.
  if (!message.contains("out of GPU memory") || presets_->currentText() == "low_memory") {
    show_error(message);
    return;
  }
  banner_->show_message(message, "Switch to low_memory and restart", [this] {
    const int index = presets_->findText("low_memory");
    if (index < 0) return show_error("The low_memory preset is missing from " + presets_dir_);
    presets_->setCurrentIndex(index);  // posts the preset to the engine
    if (!last_prompt_.isEmpty()) submit(last_prompt_);
  });
}

bool MainWindow::ensure_engine(bool quiet) {
  if (engine_) return true;
  const QStringList size = resolution_->currentText().split('x');
  const int height = size.value(0).toInt(), width = size.value(1).toInt();
  if (height <= 0 || width <= 0 || height % 16 || width % 16) {
    if (!quiet)
      show_error(
          QString("Resolution %1 is not supported: height and width must be multiples of 16.")
              .arg(resolution_->currentText()));
    return false;
  }
  ModelSpec model;
  model.tiny_random = tiny_->isChecked();
  model.full_random = random_full_ && !model.tiny_random;
  model.random_prompts = model.full_random;
  if (!model.tiny_random && !model.full_random) {
    const auto missing = missing_model_files(model_folder_.toStdString());
    if (model_folder_.isEmpty() || !missing.empty()) {
      if (!quiet) model_panel_->show_for(model_folder_, missing);
      return false;
    }
    model.folder = model_folder_.toStdString();
  }
  Preset preset;
  try {
    preset = find_preset(presets_dir_.toStdString(), presets_->currentText().toStdString());
  } catch (const std::exception& e) {
    if (!quiet) show_error(e.what());
    return false;
  }
  join_retired_engines();  // usually long done: it only waits when started within a block
  Engine::Callbacks callbacks;
  // Callbacks run on the engine thread: hop to the UI thread with queued invocations. Those of
  // an engine retired since are dropped, there and again on arrival.
  const uint64_t generation = engine_generation_.load();
  auto current = [this, generation] { return engine_generation_.load() == generation; };
  callbacks.on_frame = [this, current](EngineFrame f) {
    if (!current()) return;
    recording_->on_engine_frame(f);  // every frame, in order, before the view may drop any
    video_out_->on_engine_frame(f);  // never blocks: a slow receiver drops its own frames
    ShownFrame shown{
        {}, {}, f.index, QString::fromStdString(f.prompt), f.first_of_prompt, std::move(f.device)};
    if (f.rgba.defined()) {
      // No copy: the image reads the engine's host frame (its own per block) and keeps it alive.
      const at::Tensor rgba = f.rgba.contiguous();
      shown.image = QImage(
          static_cast<const uchar*>(rgba.data_ptr()), static_cast<int>(rgba.size(1)),
          static_cast<int>(rgba.size(0)), static_cast<qsizetype>(rgba.stride(0)),
          QImage::Format_RGBA8888, [](void* tensor) { delete static_cast<at::Tensor*>(tensor); },
          new at::Tensor(rgba));
      shown.size = shown.image.size();
    } else if (shown.device.rgba.defined()) {
      shown.size = QSize(static_cast<int>(shown.device.rgba.size(1)),
                         static_cast<int>(shown.device.rgba.size(0)));
    }
    QMetaObject::invokeMethod(
        this,
        [this, current, shown = std::move(shown)]() mutable {
          if (current()) view_->enqueue(std::move(shown));
        },
        Qt::QueuedConnection);
  };
  callbacks.on_stats = [this, current](const EngineStats& s) {
    if (!current()) return;
    // Engine thread: the allocator's counters are cheap to read here (no device sync).
    const DeviceMemory memory =
        s.device.rfind("cuda", 0) == 0 ? device_memory(at::Device(s.device)) : DeviceMemory{};
    QMetaObject::invokeMethod(
        this,
        [this, current, s, memory] {
          if (!current()) return;
          stats_ = s;
          loras_->sync(s.loras);
          inputs_->sync(s.inputs);
          followed_inputs_.sync(s.inputs);
          memory_ = memory;
          if (s.state == "error") running_ = false;
          update_host_frames();  // a video output switched on or off meanwhile
          view_->set_stats(s);
          view_->set_memory(memory);
          update_status();
          emit engine_stats_changed(s);
        },
        Qt::QueuedConnection);
  };
  callbacks.on_error = [this, current](const std::string& message) {
    QMetaObject::invokeMethod(
        this,
        [this, current, m = QString::fromStdString(message)] {
          if (current()) show_engine_error(m);
        },
        Qt::QueuedConnection);
  };
  callbacks.on_timeline = [this](const Timeline& t) {
    QMetaObject::invokeMethod(
        this, [this, t] { timeline_finished(t); }, Qt::QueuedConnection);
  };
  engine_model_ = model;
  update_host_frames();
  // Device frames only while the view can take them GPU to GPU (CUDA-GL interop). On a CPU the
  // window stays responsive however busy generation keeps the cores.
  // Latents kept for the Wan VAE export: the most recent within recording/kept_latents_mib.
  const int64_t kept_latents_mib = QSettings("LongLive", "Studio")
                                       .value("recording/kept_latents_mib", qlonglong{512})
                                       .toLongLong();
  RankPlan ranks;  // rank r on CUDA device r, the default backend
  ranks.ranks = gpus_->value();
  engine_ = std::make_unique<Engine>(
      model, preset, std::move(callbacks), height, width,
      EngineOptions{
          .device_frames = view_->wants_device_frames(),
          .yield_cpu = true,
          .host_frames = host_frames_requested_,
          // CUPTI is not attached until the Kernels tab is shown (attached, it costs memory).
          .kernel_sampling = view_->kernels_view_shown(),
          .max_kept_latent_bytes = std::max<int64_t>(kept_latents_mib, 0) << 20,
          .inputs = ffmpeg_input_opener(),
          // Camera frames are saved beside the session timelines, which name them.
          .capture_dir =
              (QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/captures")
                  .toStdString(),
          .ranks = ranks});
  // The inputs the old engine had (another resolution, model or GPU count): opened again, at the
  // new size; an input that fails now says so in the banner, as when it was chosen.
  const FollowedInputs::Requests inputs = followed_inputs_.engine_replaced();
  if (inputs.vace) engine_->set_vace(*inputs.vace);
  if (inputs.v2v) engine_->set_v2v(*inputs.v2v);
  return true;
}

void MainWindow::submit(const QString& prompt, bool cut) {
  if (prompt.trimmed().isEmpty()) {
    show_error("The prompt is empty: describe what the video should show, then press Enter.");
    return;
  }
  blend_->remember(prompt);
  last_prompt_ = prompt;
  submit_mix(PromptMix::single(prompt.toStdString()), cut);
}

void MainWindow::submit_mix(const PromptMix& mix, bool cut) {
  try {
    mix.validate("blend");
  } catch (const std::exception& e) {
    show_error(mix.prompts.empty()
                   ? "The blend is empty: type prompts in the blend rows and raise their weights."
                   : QString::fromStdString(e.what()));
    return;
  }
  if (!ensure_engine()) return;
  remember_prefetched(mix);  // the engine encodes them now: no prefetch of the same text after
  banner_->hide();
  model_panel_->hide();
  if (running_) {
    view_->mark_switch_requested();
    if (cut || !transition_->enter_transitions())
      engine_->cut(mix);
    else
      engine_->transition(mix, transition_->options());
    return;
  }
  if (random_seed_->isChecked())
    seed_->setValue(static_cast<int>(QRandomGenerator::global()->bounded(1'000'000'000)));
  view_->clear();
  recording_->new_session();
  engine_->start(mix, static_cast<uint64_t>(seed_->value()));
  running_ = true;
  paused_ = false;
}

void MainWindow::prefetch_typed_prompts() {
  std::array<QString, 1 + BlendList::kRows> texts;
  texts[0] = prompt_->toPlainText();
  for (int i = 0; i < BlendList::kRows; ++i) texts[i + 1] = blend_->row_text(i)->text();
  // What an engine has been sent dies with it.
  if (!engine_ || prefetched_generation_ != engine_generation_.load()) prefetched_.fill({});
  auto wanted = [&](size_t i) {
    return !texts[i].trimmed().isEmpty() && texts[i] != prefetched_[i];
  };
  bool any = false;
  for (size_t i = 0; i < texts.size(); ++i) any = any || wanted(i);
  // Before the first start this makes the engine, whose worker then loads the model: Enter
  // starts sooner too. Without a usable model (folder, resolution) nothing is said: Enter will.
  if (!any || !ensure_engine(/*quiet=*/true)) return;
  prefetched_generation_ = engine_generation_.load();
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!wanted(i)) continue;
    engine_->prefetch_prompt(texts[i].toStdString());
    prefetched_[i] = texts[i];
    ++prompts_prefetched_;
  }
}

void MainWindow::remember_prefetched(const PromptMix& mix) {
  if (prefetched_generation_ != engine_generation_.load()) prefetched_.fill({});
  prefetched_generation_ = engine_generation_.load();
  auto field = [&](size_t i) {
    return i == 0 ? prompt_->toPlainText() : blend_->row_text(static_cast<int>(i) - 1)->text();
  };
  for (size_t i = 0; i < prefetched_.size(); ++i)
    for (const auto& p : mix.prompts)
      if (field(i).toStdString() == p.text) prefetched_[i] = field(i);
}

void MainWindow::timeline_finished(const Timeline& timeline) {
  last_timeline_ = timeline;
  // Every stopped session is kept: a performance is never lost to a forgotten "save".
  const QString dir =
      QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/timelines";
  QDir().mkpath(dir);
  const QString path =
      dir + "/session-" + QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss-zzz") + ".json";
  try {
    save_timeline(path.toStdString(), timeline);
    last_timeline_path_ = path;
    statusBar()->showMessage(QString("timeline written to %1").arg(path), 8000);
  } catch (const std::exception& e) {
    show_error(QString("Could not write the session timeline: %1").arg(e.what()));
  }
}

void MainWindow::build_menu() {
  QMenu* file = menuBar()->addMenu("&File");
  file->addAction("Save timeline…", this, [this] {
    if (last_timeline_.events.empty()) {
      show_error("No timeline yet: a session's timeline is kept when you press Stop.");
      return;
    }
    const QString path = QFileDialog::getSaveFileName(this, "Save timeline", {}, "JSON (*.json)");
    if (path.isEmpty()) return;
    try {
      save_timeline(path.toStdString(), last_timeline_);
    } catch (const std::exception& e) {
      show_error(e.what());
    }
  });
  file->addAction("Load and play timeline…", this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Play timeline", {}, "JSON (*.json)");
    if (!path.isEmpty()) play_timeline_from(path);
  });
  file->addSeparator();
  file->addAction("Save prompt set…", blend_, &BlendList::save_set_requested);
  file->addAction("Load prompt set…", blend_, &BlendList::load_set_requested);

  video_out_ = new VideoOutControls(this, menuBar()->addMenu("&Output"));
  statusBar()->addPermanentWidget(video_out_->status_label());
  connect(video_out_, &VideoOutControls::error, this, &MainWindow::show_error);
}

bool MainWindow::save_prompt_set_to(const QString& path) {
  try {
    save_prompt_set(path.toStdString(), blend_->prompt_set());
    return true;
  } catch (const std::exception& e) {
    show_error(e.what());
    return false;
  }
}

bool MainWindow::load_prompt_set_from(const QString& path) {
  try {
    const PromptSet set = load_prompt_set(path.toStdString());
    blend_->set_prompt_set(set);
    // Encode them now so switching to any of them later costs no text-encoder time.
    if (ensure_engine())
      for (const auto& p : set.prompts) engine_->prefetch_prompt(p.text);
    return true;
  } catch (const std::exception& e) {
    show_error(e.what());
    return false;
  }
}

bool MainWindow::play_timeline_from(const QString& path) {
  try {
    const Timeline timeline = load_timeline(path.toStdString());
    const QString dir = presets_dir_;
    // The engine plays a timeline at its own size; the resolution box follows it, so recording
    // and export see that size too (changing it rebuilds the engine, as choosing it would).
    const QString size = QString("%1x%2").arg(timeline.height).arg(timeline.width);
    if (resolution_->findText(size) < 0) resolution_->addItem(size);
    resolution_->setCurrentText(size);
    if (!ensure_engine()) return false;
    // The timeline's presets are looked up by name.
    engine_->play(timeline,
                  [dir](const std::string& name) { return find_preset(dir.toStdString(), name); });
    view_->clear();
    recording_->new_session();
    running_ = true;
    paused_ = false;
    banner_->hide();
    return true;
  } catch (const std::exception& e) {
    show_error(e.what());
    return false;
  }
}

int MainWindow::osc_port() const { return osc_ ? osc_->port() : 0; }

void MainWindow::arm_midi_learn(const MidiTarget& target) {
  // Notes fire the blend rows' texts, by row (empty rows included, so slot = row).
  PromptSet rows;
  for (int i = 0; i < BlendList::kRows; ++i)
    rows.prompts.push_back({blend_->row_text(i)->text().toStdString(), 1.0});
  midi_.set_prompt_set(rows);
  midi_.arm(target);
  statusBar()->showMessage(
      QString("MIDI learn: %1 — %2")
          .arg(QString::fromStdString(describe(target)),
               target.kind == MidiTarget::Kind::lora ? "move a knob or fader" : "press a key"),
      10000);
}

void MainWindow::save_midi_bindings() {
  QSettings("LongLive", "Studio")
      .setValue("midi/bindings", QString::fromStdString(midi_.to_json().dump()));
}

void MainWindow::midi_event(const MidiEvent& event) {
  const MidiBindings::Result r = midi_.handle(event);
  QMetaObject::invokeMethod(
      this,
      [this, r] {
        if (r.learned) {
          save_midi_bindings();
          statusBar()->showMessage(
              QString("MIDI: %1 bound to channel %2, %3 %4")
                  .arg(QString::fromStdString(describe(r.learned->target)))
                  .arg(r.learned->channel + 1)
                  .arg(r.learned->target.kind == MidiTarget::Kind::lora ? "CC" : "note")
                  .arg(r.learned->number),
              5000);
        }
        for (const auto& c : r.commands) apply_control(c);
      },
      Qt::QueuedConnection);
}

void MainWindow::apply_control(const ControlCommand& c) {
  using K = ControlCommand::Kind;
  switch (c.kind) {
    case K::start:
      if (!ensure_engine()) return;
      view_->clear();
      recording_->new_session();
      engine_->start(c.mix, c.seed);
      running_ = true;
      paused_ = false;
      pause_->setText("Pause");
      return;
    case K::cut:
    case K::transition:
      if (!engine_ || !running_) {
        log::warn("remote {}: ignored, no video is running", describe(c));
        return;
      }
      view_->mark_switch_requested();
      if (c.kind == K::cut)
        engine_->cut(c.mix);
      else
        engine_->transition(c.mix, c.transition);
      return;
    case K::preset:
      if (const int i = presets_->findText(QString::fromStdString(c.name)); i >= 0)
        presets_->setCurrentIndex(i);  // posts it to the engine
      else
        log::warn("remote preset '{}': no such preset in {}", c.name, presets_dir_.toStdString());
      return;
    case K::pause:
    case K::resume:
      if (running_ && paused_ == (c.kind == K::resume)) pause_->click();
      return;
    case K::stop:
      stop();
      return;
    case K::lora_strength:
      if (engine_) engine_->set_lora_strength(c.name, c.value);
      return;
    case K::lora_load:
      if (ensure_engine()) engine_->load_lora(c.file, c.name);
      return;
    case K::lora_bake:
      if (engine_) engine_->bake_loras();
      return;
    case K::lora_unload:
      if (engine_) engine_->unload_loras();
      return;
    case K::record:
      if (recording_->recording() != c.on) recording_->toggle();
      return;
    case K::vace_scale:
      followed_inputs_.vace_scale_moved(c.value);
      if (engine_) engine_->set_vace_scale(c.value);
      return;
    case K::v2v_strength:
      followed_inputs_.v2v_strength_moved(c.value);
      if (engine_) engine_->set_v2v_strength(c.value);
      return;
    case K::stream_out:
    case K::camera_out:
      video_out_->apply(c);
      return;
  }
}

void MainWindow::stop() {
  if (engine_) engine_->stop();
  running_ = false;
  paused_ = false;
  pause_->setText("Pause");
}

void MainWindow::apply_preset(int index) {
  if (!engine_ || index < 0) return;
  try {
    engine_->set_preset(
        find_preset(presets_dir_.toStdString(), presets_->itemText(index).toStdString()));
  } catch (const std::exception& e) {
    show_error(e.what());
  }
}

void MainWindow::choose_model_folder() {
  const QString dir = QFileDialog::getExistingDirectory(this, "Model folder", model_folder_);
  if (!dir.isEmpty()) set_model_folder(dir);
}

void MainWindow::use_random_full_model(bool on) {
  random_full_ = on;
  if (on) model_panel_->hide();
}

void MainWindow::set_model_folder(const QString& dir) {
  model_folder_ = dir;
  model_label_->setText(dir);
  const auto missing = missing_model_files(dir.toStdString());
  if (!missing.empty()) {
    model_panel_->show_for(dir, missing);
  } else {
    model_panel_->hide();
    banner_->hide();
    tiny_->setChecked(false);
  }
  retire_engine();
  running_ = false;
}

void MainWindow::update_host_frames() {
  // The Record button is unchecked as a recording stops, before the recorder has detached it.
  const bool recording = recording_->record_button()->isChecked() && recording_->recording();
  host_frames_requested_ = !view_->wants_device_frames() || recording ||
                           video_out_->camera_action()->isChecked() ||
                           video_out_->stream_action()->isChecked();
  if (engine_) engine_->set_host_frames(host_frames_requested_);
}

void MainWindow::update_status() {
  QString text = QString("%1 | preset %2 | block %3 ms | %4 fps | frames %5 | switch %6 ms")
                     .arg(QString::fromStdString(stats_.state), presets_->currentText())
                     .arg(stats_.last_block_ms, 0, 'f', 1)
                     .arg(stats_.fps, 0, 'f', 1)
                     .arg(stats_.frames)
                     .arg(view_->switch_latency_ms(), 0, 'f', 0);
  if (stats_.device.rfind("cuda", 0) == 0)
    text += QString(" | GPU %1 GiB").arg(memory_.allocated_gib, 0, 'f', 2);
  if (stats_.ranks > 1) text += QString(" | %1 ranks").arg(stats_.ranks);
  // A fast path the GPU lacks is worth a glance: the preset runs, slower than it could.
  if (!stats_.fallbacks.empty()) {
    text += QString(" | fallback: %1").arg(QString::fromStdString(stats_.fallbacks.front()));
    if (stats_.fallbacks.size() > 1)
      text += QString(" (+%1 more)").arg(stats_.fallbacks.size() - 1);
  }
  status_->setText(text);
  QStringList tip;
  for (const auto& line : stats_.fallbacks) tip << QString::fromStdString(line);
  status_->setToolTip(tip.join('\n'));
}

}  // namespace longlive::ui
