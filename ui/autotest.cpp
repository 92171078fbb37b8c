#include "autotest.h"

#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>
#include <QTimer>
#include <functional>
#include <memory>

#include "main_window.h"

namespace longlive::ui {
namespace {

// Waits (spinning the event loop) until `done` or the timeout.
bool wait_until(const std::function<bool()>& done, int timeout_ms) {
  QElapsedTimer t;
  t.start();
  while (!done() && t.elapsed() < timeout_ms) QTest::qWait(20);
  return done();
}

double image_variance(const QImage& image) {
  if (image.isNull()) return 0;
  double sum = 0, sum2 = 0;
  int n = 0;
  for (int y = 0; y < image.height(); y += 2)
    for (int x = 0; x < image.width(); x += 2) {
      const double v = qGray(image.pixel(x, y));
      sum += v;
      sum2 += v * v;
      ++n;
    }
  return n ? sum2 / n - (sum / n) * (sum / n) : 0;
}

}  // namespace

void run_autotest(MainWindow* w, const QString& out_dir) {
  QDir().mkpath(out_dir);
  // Event-loop stall meter: a 10 ms timer whose gaps reveal how long the UI thread was blocked.
  auto stall = std::make_shared<double>(0);
  auto clock = std::make_shared<QElapsedTimer>();
  auto* meter = new QTimer(w);
  meter->setInterval(10);
  clock->start();
  QObject::connect(meter, &QTimer::timeout, [stall, clock] {
    *stall = std::max(*stall, static_cast<double>(clock->restart()) - 10.0);
  });

  QJsonObject report;
  bool ok = true;
  auto check = [&](const char* name, bool passed) {
    report[name] = passed;
    ok = ok && passed;
  };

  // Bad input first: an empty prompt shows a message, nothing crashes.
  w->prompt_edit()->setFocus();
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("empty_prompt_rejected", w->error_visible() && w->error_text().contains("empty"));

  QTest::keyClicks(w->prompt_edit(), "a red fox running through snow");
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("frames_painted", wait_until([&] { return w->view()->frames_painted() >= 24; }, 90000));
  const QImage first = w->view()->grabFramebuffer();
  check("pixels_vary", image_variance(first) > 1.0);
  // Measure responsiveness while streaming, switching and changing preset (not while the test
  // itself grabs screenshots).
  clock->restart();
  meter->start();

  w->prompt_edit()->clear();
  QTest::keyClicks(w->prompt_edit(), "a blue whale in the deep ocean");
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("switch_reached_engine",
        wait_until([&] { return w->view()->current().prompt == "a blue whale in the deep ocean"; },
                   90000));
  check("switch_latency_reported", w->view()->switch_latency_ms() > 0);
  report["switch_latency_ms"] = w->view()->switch_latency_ms();

  const int turbo = w->preset_box()->findText("turbo");
  if (turbo >= 0) w->preset_box()->setCurrentIndex(turbo);
  const int64_t painted = w->view()->frames_painted();
  check("frames_after_preset_change",
        wait_until([&] { return w->view()->frames_painted() > painted + 12; }, 90000));

  meter->stop();
  QTest::keyClick(w, Qt::Key_F1);
  check("overlay_visible", w->view()->overlay_visible());
  QTest::qWait(500);
  const QImage shot = w->grab().toImage();
  shot.save(out_dir + "/screenshot.png");
  check("screenshot_written", QFile::exists(out_dir + "/screenshot.png"));

  report["max_event_loop_stall_ms"] = *stall;
  check("ui_responsive_under_50ms", *stall < 50.0);
  QTest::mouseClick(w->stop_button(), Qt::LeftButton);
  check("stopped", wait_until([&] { return w->engine_stats().state == "idle"; }, 30000));
  check("no_error_banner", !w->error_visible());
  report["frames_painted_total"] = static_cast<double>(w->view()->frames_painted());
  report["passed"] = ok;

  QFile file(out_dir + "/report.json");
  file.open(QIODevice::WriteOnly);
  file.write(QJsonDocument(report).toJson());
  file.close();
  QApplication::exit(ok ? 0 : 1);
}

}  // namespace longlive::ui
