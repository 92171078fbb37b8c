// longlive-studio: the desktop app.
//   longlive-studio [--tiny] [--presets DIR] [--self-test] [--osc-port PORT]
// (The scripted GUI tests drive the same window from their own binary, longlive-studio-autotest
// in tests/gui.)
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QSettings>
#include <QTimer>

#include <cstdio>

#include "longlive/engine.h"
#include "longlive/log.h"
#include "main_window.h"
#include "video_view.h"

namespace {

// Installed (the .deb): <prefix>/bin/longlive-studio next to
// <prefix>/share/longlive-studio/presets; else the source tree's presets.
QString default_presets_dir() {
  const QString installed =
      QDir(QCoreApplication::applicationDirPath()).filePath("../share/longlive-studio/presets");
  return QDir(installed).exists() ? QDir::cleanPath(installed) : QString(LONGLIVE_PRESETS_DIR);
}

// --self-test: what a user does first (type a prompt, press Enter) on the tiny model; exits 0 once
// two blocks were generated and frames painted, 1 on an error banner or after three minutes.
// The package test runs it under Xvfb after installing the .deb.
void start_self_test(QApplication& app, longlive::ui::MainWindow& window) {
  auto* edit = window.prompt_edit();
  edit->setPlainText("a red fox running through snow");
  emit edit->submitted(edit->toPlainText());
  auto* poll = new QTimer(&window);
  QObject::connect(poll, &QTimer::timeout, &window, [&app, &window, poll] {
    if (window.error_visible()) {
      std::fprintf(stderr, "self-test failed: %s\n", window.error_text().toUtf8().constData());
      poll->stop();
      app.exit(1);
      return;
    }
    const longlive::EngineStats stats = window.engine_stats();
    if (stats.blocks >= 2 && window.view()->frames_painted() > 0) {
      std::printf("self-test passed: %lld blocks, %lld frames painted, preset %s on %s\n",
                  static_cast<long long>(stats.blocks),
                  static_cast<long long>(window.view()->frames_painted()), stats.preset.c_str(),
                  stats.device.c_str());
      std::fflush(stdout);
      poll->stop();
      app.exit(0);
    }
  });
  poll->start(200);
  QTimer::singleShot(180'000, &window, [&app] {
    std::fprintf(stderr, "self-test failed: no two blocks within 180 s\n");
    app.exit(1);
  });
}

}  // namespace

int main(int argc, char** argv) {
  longlive::keep_large_host_buffers_out_of_the_heap();  // hours on stage: RSS stays flat
  QApplication app(argc, argv);
  QApplication::setApplicationName("LongLive Studio");
  QApplication::setApplicationVersion(LONGLIVE_VERSION);
  QCommandLineParser parser;
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption tiny("tiny",
                          "Start with the tiny random model (runs on CPU, no weights needed)");
  QCommandLineOption presets("presets", "Preset folder", "dir", default_presets_dir());
  QCommandLineOption self_test(
      "self-test", "Generate two blocks with the tiny model, then exit (0: passed, 1: failed)");
  QCommandLineOption osc_port(
      "osc-port", "UDP port for OSC control (docs/control.md; 0 = off; remembered)", "port");
  QCommandLineOption gpus(
      "gpus", "Run the stream on N GPUs (docs/multi-gpu.md; the GPUs box; remembered)", "N");
  parser.addOptions({tiny, presets, self_test, osc_port, gpus});
  parser.process(app);
  longlive::log::init(longlive::log::Level::info);
  if (parser.isSet(osc_port)) {
    bool ok = false;
    const int port = parser.value(osc_port).toInt(&ok);
    if (!ok || port < 0 || port > 65535) parser.showHelp(2);
    QSettings("LongLive", "Studio").setValue("osc/port", port);
  }
  if (parser.isSet(gpus)) {
    bool ok = false;
    const int n = parser.value(gpus).toInt(&ok);
    if (!ok || n < 1 || n > 8) parser.showHelp(2);
    QSettings("LongLive", "Studio").setValue("engine/gpus", n);
  }

  longlive::ui::MainWindow window(parser.value(presets),
                                  parser.isSet(tiny) || parser.isSet(self_test));
  window.resize(960, 720);
  window.show();
  if (parser.isSet(self_test)) start_self_test(app, window);
  return app.exec();
}
