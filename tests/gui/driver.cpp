#include "driver.h"

#include "recording_controls.h"

#include <QEventLoop>
#include <QFile>
#include <QJsonDocument>
#include <QTest>
#include <QTimer>
#include <QWidget>

namespace longlive::ui::autotest {

std::shared_ptr<Finished> watch_recordings(RecordingControls* controls) {
  auto finished = std::make_shared<Finished>();
  QObject::connect(controls, &RecordingControls::recording_finished,
                   [finished](const QString& path, qint64 frames, const QString& error) {
                     *finished = {true, path, error, frames};
                   });
  return finished;
}

bool run_events_until(const std::function<bool()>& done, int timeout_ms,
                      const std::function<void()>& on_poll) {
  if (done()) return true;
  QEventLoop loop;
  QTimer poll;
  poll.setInterval(20);
  QObject::connect(&poll, &QTimer::timeout, &loop, [&] {
    if (on_poll) on_poll();
    if (done()) loop.quit();
  });
  QTimer deadline;
  deadline.setSingleShot(true);
  QObject::connect(&deadline, &QTimer::timeout, &loop, &QEventLoop::quit);
  poll.start();
  deadline.start(timeout_ms);
  loop.exec();
  return done();
}

bool wait_until(const std::function<bool()>& done, int timeout_ms) {
  return run_events_until(done, timeout_ms);
}

void run_events_for(int ms) {
  run_events_until([] { return false; }, ms);
}

void click(QWidget* target) {
  QTest::mousePress(target, Qt::LeftButton);
  run_events_for(80);
  QTest::mouseRelease(target, Qt::LeftButton);
}

void press_key(QWidget* target, Qt::Key key, Qt::KeyboardModifiers modifiers) {
  QTest::keyPress(target, key, modifiers);
  run_events_for(80);
  QTest::keyRelease(target, key, modifiers);
}

void type_text(QWidget* target, const QString& text, int gap_ms) {
  for (const QChar c : text) {
    QTest::keyClicks(target, QString(c));
    run_events_for(gap_ms);
  }
}

void write_report(const QString& out_dir, QJsonObject report, bool passed) {
  report["passed"] = passed;
  QFile file(out_dir + "/report.json");
  file.open(QIODevice::WriteOnly);
  file.write(QJsonDocument(report).toJson());
}

}  // namespace longlive::ui::autotest
