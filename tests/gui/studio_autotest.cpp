// longlive-studio-autotest: the studio's window (the product's MainWindow, as longlive-studio
// builds it) driven by a scripted GUI test, for ctest under Xvfb. Not installed; the studio
// itself carries no test code.
//   longlive-studio-autotest [--tiny] [--presets DIR] [--scenario NAME] [--record-seconds S]
//                            [--watch-ms MS] [--model-folder DIR] --autotest OUT
// Writes OUT/report.json and exits 0 when every check passed.
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>
#include <cstdio>

#include "autotest.h"
#include "longlive/log.h"
#include "main_window.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("LongLive Studio");  // the studio's settings and folders
  QCommandLineParser parser;
  parser.addHelpOption();
  QCommandLineOption tiny("tiny",
                          "Start with the tiny random model (runs on CPU, no weights needed)");
  QCommandLineOption presets("presets", "Preset folder", "dir", LONGLIVE_PRESETS_DIR);
  QCommandLineOption out("autotest", "Folder for report.json and what the test writes", "out_dir");
  QCommandLineOption scenario("scenario",
                              "session (the whole scripted session, default), prefetch "
                              "(a typed-then-idle prompt is a prompt-cache hit at Enter) or "
                              "inputs (a video file as VACE input), disk_full (a recording disk "
                              "that fills), faults (out of memory while recording, a decode that "
                              "fails) or gpu_session (the measured session; without --tiny the "
                              "1.3B model with random weights)",
                              "name", "session");
  QCommandLineOption record_seconds("record-seconds", "gpu_session: recording length", "s", "20");
  QCommandLineOption watch_ms("watch-ms", "gpu_session: watching after each switch", "ms", "2500");
  QCommandLineOption model_folder(
      "model-folder",
      "gpu_session, faults, disk_full: load this model folder instead of random weights", "dir");
  parser.addOptions({tiny, presets, out, scenario, record_seconds, watch_ms, model_folder});
  parser.process(app);
  const QString name = parser.value(scenario);
  if (!parser.isSet(out) || (name != "session" && name != "prefetch" && name != "inputs" &&
                             name != "gpu_session" && name != "disk_full" && name != "faults")) {
    std::fprintf(stderr,
                 "usage: %s [--tiny] "
                 "[--scenario session|prefetch|inputs|disk_full|faults|gpu_session] "
                 "--autotest OUT_DIR\n",
                 argv[0]);
    return 2;
  }
  longlive::log::init(longlive::log::Level::info);

  longlive::ui::MainWindow window(parser.value(presets), parser.isSet(tiny));
  window.resize(960, 720);
  window.show();
  const QString dir = parser.value(out);
  const longlive::ui::GpuSessionOptions gpu{parser.value(record_seconds).toInt(),
                                            parser.value(watch_ms).toInt(),
                                            parser.value(model_folder)};
  QTimer::singleShot(300, &window, [&window, dir, name, gpu] {
    if (name == "gpu_session")
      longlive::ui::run_gpu_session_autotest(&window, dir, gpu);
    else if (name == "prefetch")
      longlive::ui::run_prefetch_autotest(&window, dir);
    else if (name == "inputs")
      longlive::ui::run_inputs_autotest(&window, dir);
    else if (name == "disk_full")
      longlive::ui::run_disk_full_autotest(&window, dir, gpu.model_folder);
    else if (name == "faults")
      longlive::ui::run_faults_autotest(&window, dir, gpu.model_folder);
    else
      longlive::ui::run_autotest(&window, dir);
  });
  return app.exec();
}
