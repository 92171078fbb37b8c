// longlive-studio: the desktop app.
//   longlive-studio [--tiny] [--presets DIR]
// (The scripted GUI tests drive the same window from their own binary, longlive-studio-autotest
// in tests/gui.)
#include <QApplication>
#include <QCommandLineParser>

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
  parser.addOptions({tiny, presets});
  parser.process(app);
  longlive::log::init(longlive::log::Level::info);

  longlive::ui::MainWindow window(parser.value(presets), parser.isSet(tiny));
  window.resize(960, 720);
  window.show();
  return app.exec();
}
