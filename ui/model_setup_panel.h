#pragma once
// First run without model files: says which files are missing from the chosen folder, shows the
// expected folder layout (the README's "Model files"), and offers a folder picker or the tiny
// random model, so the app can be tried before downloading anything.
#include <QFrame>
#include <QLabel>
#include <QPushButton>
#include <string>
#include <vector>

namespace longlive::ui {

class ModelSetupPanel : public QFrame {
  Q_OBJECT
 public:
  explicit ModelSetupPanel(QWidget* parent = nullptr);

  // Shows the panel for `folder` (may be empty: none chosen yet) and its missing files.
  void show_for(const QString& folder, const std::vector<std::string>& missing);
  QString missing_text() const { return missing_->text(); }
  QPushButton* choose_button() const { return choose_; }
  QPushButton* tiny_button() const { return tiny_; }

 signals:
  void choose_folder_requested();
  void tiny_requested();

 private:
  QLabel* missing_;
  QPushButton* choose_;
  QPushButton* tiny_;
};

}  // namespace longlive::ui
