#include "perform_panel.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QMenu>
#include <QSettings>
#include <QSignalBlocker>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "longlive/style_lora.h"

namespace longlive::ui {

TransitionControls::TransitionControls(QWidget* parent) : QWidget(parent) {
  QSettings settings("LongLive", "Studio");
  auto* grid = new QGridLayout(this);
  grid->setContentsMargins(0, 0, 0, 0);
  length_ = new QSpinBox;
  length_->setRange(0, 64);
  length_->setValue(settings.value("perform/transition_length", 4).toInt());
  length_->setToolTip("Transition length (0 = hard cut)");
  unit_ = new QComboBox;
  unit_->addItems({"blocks", "seconds"});
  unit_->setCurrentText(settings.value("perform/transition_unit", "blocks").toString());
  interpolation_ = new QComboBox;
  interpolation_->addItems({"slerp", "linear"});
  interpolation_->setCurrentText(settings.value("perform/interpolation", "slerp").toString());
  recache_ = new QCheckBox("re-cache at end");
  recache_->setChecked(settings.value("perform/recache", false).toBool());
  recache_->setToolTip(
      "Rebuild the cached frames under the target prompt when the transition "
      "ends (a small cut; the new prompt takes hold faster)");
  enter_ = new QComboBox;
  enter_->addItems({"Enter: transition", "Enter: hard cut"});
  enter_->setCurrentIndex(settings.value("perform/enter_cuts", false).toBool() ? 1 : 0);
  enter_->setToolTip("Ctrl+Enter always cuts");
  grid->addWidget(new QLabel("Transition"), 0, 0);
  grid->addWidget(length_, 0, 1);
  grid->addWidget(unit_, 0, 2);
  grid->addWidget(interpolation_, 1, 1);
  grid->addWidget(recache_, 1, 2);
  grid->addWidget(enter_, 2, 1, 1, 2);
}

TransitionControls::~TransitionControls() {
  QSettings settings("LongLive", "Studio");
  settings.setValue("perform/transition_length", length_->value());
  settings.setValue("perform/transition_unit", unit_->currentText());
  settings.setValue("perform/interpolation", interpolation_->currentText());
  settings.setValue("perform/recache", recache_->isChecked());
  settings.setValue("perform/enter_cuts", enter_->currentIndex() == 1);
}

TransitionOptions TransitionControls::options() const {
  TransitionOptions o;
  const int v = length_->value();
  o.blocks = unit_->currentIndex() == 1 ? std::lround(v / kSecondsPerBlock) : v;
  o.interpolation =
      interpolation_->currentIndex() == 0 ? Interpolation::slerp : Interpolation::linear;
  o.recache_at_end = recache_->isChecked();
  return o;
}

bool TransitionControls::enter_transitions() const { return enter_->currentIndex() == 0; }

BlendList::BlendList(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* grid = new QGridLayout;
  for (int i = 0; i < kRows; ++i) {
    Row& r = rows_[i];
    r.text = new QLineEdit;
    r.text->setPlaceholderText(QString("blend prompt %1").arg(i + 1));
    r.weight = new QSlider(Qt::Horizontal);
    r.weight->setRange(0, 100);
    r.weight->setValue(i == 0 ? 100 : 0);
    r.weight->setMaximumWidth(120);
    r.value = new QLabel;
    // Fixed sizes: a label or list that grows re-lays out the window and resizes the video
    // view, which costs a GL framebuffer reallocation and a full repaint.
    r.value->setFixedWidth(36);
    connect(r.weight, &QSlider::valueChanged, r.value,
            [label = r.value](int v) { label->setText(QString::number(v / 100.0, 'f', 2)); });
    r.value->setText(QString::number(r.weight->value() / 100.0, 'f', 2));
    connect(r.text, &QLineEdit::textEdited, this, &BlendList::row_text_edited);
    grid->addWidget(r.text, i, 0);
    grid->addWidget(r.weight, i, 1);
    grid->addWidget(r.value, i, 2);
  }
  layout->addLayout(grid);
  auto* buttons = new QHBoxLayout;
  blend_ = new QPushButton("Blend");
  blend_->setToolTip("Move to the weighted blend of the prompts (with the transition setting)");
  mode_ = new QComboBox;
  mode_->addItems({"linear", "slerp (2 prompts)"});
  auto* save = new QPushButton("Save set…");
  auto* load = new QPushButton("Load set…");
  recent_ = new QComboBox;
  recent_->setPlaceholderText("recent prompts");
  recent_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  recent_->setMinimumContentsLength(24);
  QSettings settings("LongLive", "Studio");
  recent_->addItems(settings.value("perform/recent").toStringList());
  recent_->setCurrentIndex(-1);
  for (QWidget* w : std::initializer_list<QWidget*>{blend_, mode_, save, load, recent_})
    buttons->addWidget(w);
  layout->addLayout(buttons);

  connect(blend_, &QPushButton::clicked, this, [this] { emit blend_requested(mix()); });
  connect(save, &QPushButton::clicked, this, &BlendList::save_set_requested);
  connect(load, &QPushButton::clicked, this, &BlendList::load_set_requested);
  connect(recent_, &QComboBox::activated, this,
          [this](int index) { emit recent_chosen(recent_->itemText(index)); });
}

BlendList::~BlendList() {
  QSettings settings("LongLive", "Studio");
  settings.setValue("perform/recent", recent());
}

PromptMix BlendList::mix() const {
  PromptMix mix;
  mix.blend = mode_->currentIndex() == 1 ? Interpolation::slerp : Interpolation::linear;
  for (const Row& r : rows_)
    if (!r.text->text().trimmed().isEmpty() && r.weight->value() > 0)
      mix.prompts.push_back({r.text->text().toStdString(), r.weight->value() / 100.0});
  return mix;
}

PromptSet BlendList::prompt_set() const {
  PromptSet set;
  set.blend = mix().blend;
  for (const Row& r : rows_)
    if (!r.text->text().trimmed().isEmpty())
      set.prompts.push_back({r.text->text().toStdString(), r.weight->value() / 100.0});
  return set;
}

void BlendList::set_prompt_set(const PromptSet& set) {
  mode_->setCurrentIndex(set.blend == Interpolation::slerp ? 1 : 0);
  double top = 0;
  for (const auto& p : set.prompts) top = std::max(top, p.weight);
  for (int i = 0; i < kRows; ++i) {
    const bool has = i < static_cast<int>(set.prompts.size());
    rows_[i].text->setText(has ? QString::fromStdString(set.prompts[i].text) : QString());
    // Sliders show weights relative to the largest (blends normalise anyway).
    rows_[i].weight->setValue(
        has && top > 0 ? static_cast<int>(std::lround(100 * set.prompts[i].weight / top)) : 0);
  }
  for (auto it = set.prompts.rbegin(); it != set.prompts.rend(); ++it)
    remember(QString::fromStdString(it->text));
}

void BlendList::remember(const QString& prompt) {
  std::vector<std::string> list;
  for (const QString& p : recent()) list.push_back(p.toStdString());
  remember_prompt(list, prompt.toStdString());
  recent_->clear();
  for (const auto& p : list) recent_->addItem(QString::fromStdString(p));
  recent_->setCurrentIndex(-1);
}

QStringList BlendList::recent() const {
  QStringList list;
  for (int i = 0; i < recent_->count(); ++i) list << recent_->itemText(i);
  return list;
}

LoraFaders::LoraFaders(QWidget* parent) : QWidget(parent) {
  layout_ = new QHBoxLayout(this);
  layout_->setContentsMargins(0, 0, 0, 0);
  load_ = new QPushButton("Load LoRA…");
  load_->setToolTip(
      "Add a Wan2.1-1.3B style LoRA (PEFT, diffusers, ComfyUI or kohya .safetensors) as a fader "
      "0–1.5; moves apply at the next block");
  layout_->addWidget(load_);
  layout_->addStretch(1);
  bake_ = new QPushButton("Bake");
  bake_->setToolTip(
      "Merge the faders that are up into the model's weights at their strengths (then they drop "
      "to 0 and cost nothing per block). Undo: restart the studio (the model is rebuilt from "
      "its unbaked weights). Right-click: MIDI learn");
  layout_->addWidget(bake_);
  unload_ = new QPushButton("Unload LoRAs");
  unload_->setToolTip(
      "Remove every loaded style LoRA from the session at the next block (their faders and "
      "per-block cost go; what was baked stays in the weights)");
  layout_->addWidget(unload_);
  connect(load_, &QPushButton::clicked, this, &LoraFaders::load_requested);
  connect(bake_, &QPushButton::clicked, this, &LoraFaders::bake_requested);
  connect(unload_, &QPushButton::clicked, this, &LoraFaders::unload_requested);
  bake_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(bake_, &QWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    QMenu menu;
    menu.addAction("MIDI learn (a key bakes)", [this] { emit bake_midi_learn_requested(); });
    menu.exec(bake_->mapToGlobal(at));
  });
}

QLabel* LoraFaders::value_label(const QString& name) const {
  const auto it = rows_.find(name);
  return it == rows_.end() ? nullptr : it->second.value;
}

namespace {
QString fader_text(double strength, double baked) {
  QString text = QString::number(strength, 'f', 2);
  if (baked > 0) text += QString(" · baked at %1").arg(baked, 0, 'f', 2);
  return text;
}
}  // namespace

LoraFaders::~LoraFaders() = default;

QSlider* LoraFaders::slider(const QString& name) const {
  const auto it = rows_.find(name);
  return it == rows_.end() ? nullptr : it->second.slider;
}

void LoraFaders::sync(const std::vector<EngineStats::Fader>& faders) {
  // Rows of LoRAs the engine no longer has (unloaded) go.
  for (auto it = rows_.begin(); it != rows_.end();) {
    const bool kept = std::any_of(faders.begin(), faders.end(), [&](const EngineStats::Fader& f) {
      return QString::fromStdString(f.name) == it->first;
    });
    if (kept) {
      ++it;
      continue;
    }
    for (QWidget* w :
         {static_cast<QWidget*>(it->second.name), static_cast<QWidget*>(it->second.slider),
          static_cast<QWidget*>(it->second.value)}) {
      layout_->removeWidget(w);
      w->deleteLater();
    }
    it = rows_.erase(it);
  }
  for (const auto& f : faders) {
    const QString name = QString::fromStdString(f.name);
    auto it = rows_.find(name);
    if (it == rows_.end()) {
      Row row;
      row.name = new QLabel(name);
      row.slider = new QSlider(Qt::Horizontal);
      row.slider->setRange(0, kSteps);
      row.slider->setMinimumWidth(90);
      row.slider->setToolTip(QString("Strength of the style LoRA %1 (0–1.5)").arg(name));
      row.value = new QLabel("0.00");
      const int at = 1 + 3 * static_cast<int>(rows_.size());  // after Load and the rows
      layout_->insertWidget(at, row.value);
      layout_->insertWidget(at, row.slider);
      layout_->insertWidget(at, row.name);
      row.slider->setContextMenuPolicy(Qt::CustomContextMenu);
      connect(row.slider, &QWidget::customContextMenuRequested, this,
              [this, name, slider = row.slider](const QPoint& at) {
                QMenu menu;
                menu.addAction("MIDI learn (move a controller next)",
                               [this, name] { emit midi_learn_requested(name); });
                menu.exec(slider->mapToGlobal(at));
              });
      connect(row.slider, &QSlider::valueChanged, this, [this, name, label = row.value](int v) {
        const double strength = v * kMaxLoraStrength / kSteps;
        label->setText(QString::number(strength, 'f', 2));
        emit strength_changed(name, strength);
      });
      it = rows_.emplace(name, row).first;
    }
    // Follows the engine unless the performer is holding the slider.
    const int steps = static_cast<int>(std::lround(f.strength / kMaxLoraStrength * kSteps));
    if (!it->second.slider->isSliderDown() && it->second.slider->value() != steps) {
      const QSignalBlocker block(it->second.slider);
      it->second.slider->setValue(steps);
    }
    if (!it->second.slider->isSliderDown())
      it->second.value->setText(fader_text(f.strength, f.baked));
  }
}

}  // namespace longlive::ui
