#pragma once
// A visible, non-modal error strip above the video: the message, optionally one button that
// fixes the problem (e.g. "Switch to low_memory" after running out of GPU memory), and a close
// button. The app stays usable while it shows.
#include <QFrame>
#include <QLabel>
#include <QPushButton>
#include <functional>

namespace longlive::ui {

class ErrorBanner : public QFrame {
  Q_OBJECT
 public:
  explicit ErrorBanner(QWidget* parent = nullptr);

  void show_message(const QString& message);
  // With an action button that runs `action` and hides the banner.
  void show_message(const QString& message, const QString& action_text,
                    std::function<void()> action);
  QString text() const { return label_->text(); }
  QPushButton* action_button() const { return action_; }

 private:
  QLabel* label_;
  QPushButton* action_;
  std::function<void()> on_action_;
};

}  // namespace longlive::ui
