#include "error_banner.h"

#include <QHBoxLayout>
#include <QToolButton>

namespace longlive::ui {

ErrorBanner::ErrorBanner(QWidget* parent) : QFrame(parent) {
  setObjectName("errorBanner");
  setStyleSheet(
      "#errorBanner{background:#7a1f1f;border-radius:4px} QLabel{color:white} "
      "QPushButton{background:#f0f0f0;color:#202020;padding:3px 10px;border-radius:3px}");
  label_ = new QLabel;
  label_->setWordWrap(true);
  label_->setTextInteractionFlags(Qt::TextSelectableByMouse);  // messages can be copied
  action_ = new QPushButton;
  action_->hide();
  auto* close = new QToolButton;
  close->setText("✕");
  close->setToolTip("Dismiss");
  close->setStyleSheet("color:white;border:none");
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 6);
  layout->addWidget(label_, 1);
  layout->addWidget(action_);
  layout->addWidget(close);
  connect(close, &QToolButton::clicked, this, &QWidget::hide);
  connect(action_, &QPushButton::clicked, this, [this] {
    hide();
    if (on_action_) on_action_();
  });
  hide();
}

void ErrorBanner::show_message(const QString& message) {
  label_->setText(message);
  action_->hide();
  on_action_ = nullptr;
  show();
}

void ErrorBanner::show_message(const QString& message, const QString& action_text,
                               std::function<void()> action) {
  label_->setText(message);
  action_->setText(action_text);
  action_->show();
  on_action_ = std::move(action);
  show();
}

}  // namespace longlive::ui
