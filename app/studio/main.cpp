// longlive-studio: the desktop app.
//   longlive-studio [--tiny] [--presets DIR] [--autotest OUT_DIR]
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include "autotest.h"
#include "longlive/log.h"
#include "main_window.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("LongLive Studio");
  QCommandLineParser parser;
  parser.addHelpOption();
  QCommandLineOption tiny("tiny",
                          "Start with the tiny random model (runs on CPU, no weights needed)");
  QCommandLineOption presets("presets", "Preset folder", "dir", LONGLIVE_PRESETS_DIR);
  QCommandLineOption autotest(
      "autotest", "Drive the UI through a scripted session, write a report, exit", "out_dir");
  parser.addOptions({tiny, presets, autotest});
  parser.process(app);
  longlive::log::init(longlive::log::Level::info);

  longlive::ui::MainWindow window(parser.value(presets), parser.isSet(tiny));
  window.resize(960, 720);
  window.show();
  if (parser.isSet(autotest)) {
    const QString out = parser.value(autotest);
    QTimer::singleShot(300, &window, [&window, out] { longlive::ui::run_autotest(&window, out); });
  }
  return app.exec();
}
