// Placeholder until the studio main window lands (issue: desktop app).
#include <QApplication>
#include <QLabel>

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QLabel label("LongLive Studio");
  label.show();
  return app.exec();
}
