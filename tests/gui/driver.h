#pragma once
// What the scripted GUI tests (tests/gui/*_autotest.cpp) share: running the application's own
// event loop between steps, clicks and key presses as a person makes them, and the report file.
#include <QJsonObject>
#include <QString>
#include <Qt>
#include <functional>
#include <memory>

class QWidget;

namespace longlive::ui {
class RecordingControls;
}

namespace longlive::ui::autotest {

// A scenario's report: its named checks (the scenario passes when all did) and the values it
// records beside them. check("name", passed) records one.
struct Checklist {
  QJsonObject report;
  bool ok = true;
  void operator()(const char* name, bool passed) {
    report[name] = passed;
    ok = ok && passed;
  }
};

// A recording or export that finished: its file, frames and error (empty: none).
struct Finished {
  bool done = false;
  QString path, error;
  qint64 frames = 0;
};
// The latest RecordingControls::recording_finished, as it arrives.
std::shared_ptr<Finished> watch_recordings(RecordingControls* controls);

// Runs the application's event loop as normal use does, until done() holds or the timeout;
// on_poll runs every 20 ms. (QTest::qWait sleeps between its passes over the events, and those
// sleeps would show up on the stall meter as the app's own.)
bool run_events_until(const std::function<bool()>& done, int timeout_ms,
                      const std::function<void()>& on_poll = {});
bool wait_until(const std::function<bool()>& done, int timeout_ms);
void run_events_for(int ms);

// A person's click or key press: down, ~80 ms, up, with the event loop running in between (QTest's
// clicks send both at once, so the two repaints they cause land in one tick of the stall meter).
void click(QWidget* target);
void press_key(QWidget* target, Qt::Key key, Qt::KeyboardModifiers modifiers = Qt::NoModifier);
// Types `text` into the focused-or-given widget one key at a time, `gap_ms` of event loop after
// each key (a person typing: timers run between the keys).
void type_text(QWidget* target, const QString& text, int gap_ms);

// Writes `report` (with "passed") as out_dir/report.json.
void write_report(const QString& out_dir, QJsonObject report, bool passed);

}  // namespace longlive::ui::autotest
