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
#include <memory>

#include "longlive/engine.h"
#include "longlive/preset.h"
#include "video_view.h"

namespace longlive::ui {

class PromptEdit : public QPlainTextEdit {
  Q_OBJECT
 public:
  using QPlainTextEdit::QPlainTextEdit;
 signals:
  void submitted(const QString& text);

 protected:
  void keyPressEvent(QKeyEvent* event) override;

 private:
  QStringList history_;
  int history_pos_ = -1;
};

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  MainWindow(QString presets_dir, bool tiny_model);
  ~MainWindow() override;

  // Test access.
  PromptEdit* prompt_edit() const { return prompt_; }
  QPushButton* stop_button() const { return stop_; }
  QComboBox* preset_box() const { return presets_; }
  VideoView* view() const { return view_; }
  bool error_visible() const { return banner_->isVisible(); }
  QString error_text() const { return banner_->text(); }
  EngineStats engine_stats() const;

 protected:
  void keyPressEvent(QKeyEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void submit(const QString& prompt);
  void stop();
  void choose_model_folder();
  void show_error(const QString& message);
  void apply_preset(int index);
  bool ensure_engine();
  void update_status();

  QString presets_dir_;

  PromptEdit* prompt_ = nullptr;
  QPushButton *start_ = nullptr, *pause_ = nullptr, *stop_ = nullptr;
  QSpinBox* seed_ = nullptr;
  QCheckBox* random_seed_ = nullptr;
  QComboBox* resolution_ = nullptr;
  QComboBox* presets_ = nullptr;
  QCheckBox* tiny_ = nullptr;
  QLabel* model_label_ = nullptr;
  QLabel* banner_ = nullptr;
  QLabel* status_ = nullptr;
  VideoView* view_ = nullptr;
  QString model_folder_;
  std::unique_ptr<Engine> engine_;
  bool running_ = false;
  bool paused_ = false;
  EngineStats stats_;
};

}  // namespace longlive::ui
