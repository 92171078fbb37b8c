// longlive-studio: the desktop app.
//   longlive-studio [--tiny] [--presets DIR] [--osc-port PORT]
// (The scripted GUI tests drive the same window from their own binary, longlive-studio-autotest
// in tests/gui.)
#include <QApplication>
#include <QCommandLineParser>
#include <QSettings>

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
  QCommandLineOption osc_port(
      "osc-port", "UDP port for OSC control (docs/control.md; 0 = off; remembered)", "port");
  parser.addOptions({tiny, presets, osc_port});
  parser.process(app);
  longlive::log::init(longlive::log::Level::info);
  if (parser.isSet(osc_port)) {
    bool ok = false;
    const int port = parser.value(osc_port).toInt(&ok);
    if (!ok || port < 0 || port > 65535) parser.showHelp(2);
    QSettings("LongLive", "Studio").setValue("osc/port", port);
  }

  longlive::ui::MainWindow window(parser.value(presets), parser.isSet(tiny));
  window.resize(960, 720);
  window.show();
  return app.exec();
}
