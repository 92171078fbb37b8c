#pragma once
// Performing controls: the transition settings beside the prompt box (length in blocks or seconds,
// interpolation, re-cache at the end, what Enter does) and a list of up to four prompts with
// weight sliders for blends, with prompt sets (save/load) and recent prompts. Settings persist in
// QSettings; the widgets only describe what to send, MainWindow sends it to the engine.
#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QWidget>
#include <array>
#include <map>
#include <vector>

#include "longlive/engine.h"
#include "longlive/prompt_mix.h"
#include "longlive/timeline.h"

namespace longlive::ui {

class TransitionControls : public QWidget {
  Q_OBJECT
 public:
  explicit TransitionControls(QWidget* parent = nullptr);
  ~TransitionControls() override;

  // The length converted to blocks (a block is 12 video frames = 0.75 s at 16 fps).
  TransitionOptions options() const;
  bool enter_transitions() const;  // Enter = transition, else Enter = hard cut

  QSpinBox* length_box() const { return length_; }
  QComboBox* unit_box() const { return unit_; }
  QComboBox* enter_box() const { return enter_; }

  static constexpr double kSecondsPerBlock = 0.75;

 private:
  QSpinBox* length_ = nullptr;
  QComboBox* unit_ = nullptr;
  QComboBox* interpolation_ = nullptr;
  QCheckBox* recache_ = nullptr;
  QComboBox* enter_ = nullptr;
};

class BlendList : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kRows = static_cast<int>(kMaxBlendPrompts);
  explicit BlendList(QWidget* parent = nullptr);
  ~BlendList() override;

  // Rows with text and a weight > 0, with the blend mode; empty prompts when none.
  PromptMix mix() const;
  PromptSet prompt_set() const;               // every row with text, weights as set
  void set_prompt_set(const PromptSet& set);  // first kRows prompts into the rows
  void remember(const QString& prompt);       // recent prompts (persisted)
  QStringList recent() const;

  QLineEdit* row_text(int i) const { return rows_[i].text; }
  QSlider* row_weight(int i) const { return rows_[i].weight; }
  QPushButton* blend_button() const { return blend_; }

 signals:
  void blend_requested(const longlive::PromptMix& mix);
  void recent_chosen(const QString& prompt);
  void row_text_edited();  // a key typed into a row (the window prefetches once typing pauses)
  void save_set_requested();
  void load_set_requested();

 private:
  struct Row {
    QLineEdit* text = nullptr;
    QSlider* weight = nullptr;
    QLabel* value = nullptr;
  };
  std::array<Row, kRows> rows_;
  QComboBox* mode_ = nullptr;
  QComboBox* recent_ = nullptr;
  QPushButton* blend_ = nullptr;
};

// Style-LoRA faders (docs/performing.md): "Load LoRA…" and one slider (0..1.5) per loaded LoRA.
// The sliders only describe what to send (MainWindow sends it); sync() follows the engine's state,
// so moves (and loads, unloads) that come over OSC or MIDI show here too.
class LoraFaders : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kSteps = 150;  // slider steps for 0..kMaxLoraStrength
  explicit LoraFaders(QWidget* parent = nullptr);
  ~LoraFaders() override;

  void sync(const std::vector<EngineStats::Fader>& faders);
  QSlider* slider(const QString& name) const;  // null when no such LoRA is loaded
  QPushButton* load_button() const { return load_; }
  // "Bake": merges the faders that are up into the weights (with none up the engine says so in
  // the banner). Right-click: MIDI learn.
  QPushButton* bake_button() const { return bake_; }
  // "Unload LoRAs": removes every loaded LoRA from the session (their faders and side path; what
  // was baked stays in the weights).
  QPushButton* unload_button() const { return unload_; }
  QLabel* value_label(const QString& name) const;  // "0.00", "0.00 · baked at 0.80"

 signals:
  void load_requested();
  void bake_requested();
  void unload_requested();
  void strength_changed(const QString& name, double strength);
  void midi_learn_requested(const QString& name);  // right-click > MIDI learn
  void bake_midi_learn_requested();                // right-click Bake > MIDI learn (a key)

 private:
  struct Row {
    QLabel* name = nullptr;
    QSlider* slider = nullptr;
    QLabel* value = nullptr;
  };
  std::map<QString, Row> rows_;
  QHBoxLayout* layout_ = nullptr;
  QPushButton* load_ = nullptr;
  QPushButton* bake_ = nullptr;
  QPushButton* unload_ = nullptr;
};

}  // namespace longlive::ui
