#include "imgui_layer.h"

#include <imgui.h>
// Debian's libimgui ships the backends under backends/ next to imgui.h.
#include <backends/imgui_impl_opengl3.h>

#include <QKeyEvent>
#include <array>
#include <utility>

#include "longlive/log.h"

namespace longlive::ui {
namespace {

// Qt keys ImGui's navigation and text editing use; KeysDown[] is indexed by ImGuiKey_* itself.
constexpr std::array<std::pair<int, ImGuiKey>, 22> kKeys = {{
    {Qt::Key_Tab, ImGuiKey_Tab},
    {Qt::Key_Left, ImGuiKey_LeftArrow},
    {Qt::Key_Right, ImGuiKey_RightArrow},
    {Qt::Key_Up, ImGuiKey_UpArrow},
    {Qt::Key_Down, ImGuiKey_DownArrow},
    {Qt::Key_PageUp, ImGuiKey_PageUp},
    {Qt::Key_PageDown, ImGuiKey_PageDown},
    {Qt::Key_Home, ImGuiKey_Home},
    {Qt::Key_End, ImGuiKey_End},
    {Qt::Key_Insert, ImGuiKey_Insert},
    {Qt::Key_Delete, ImGuiKey_Delete},
    {Qt::Key_Backspace, ImGuiKey_Backspace},
    {Qt::Key_Space, ImGuiKey_Space},
    {Qt::Key_Return, ImGuiKey_Enter},
    {Qt::Key_Escape, ImGuiKey_Escape},
    {Qt::Key_Enter, ImGuiKey_KeyPadEnter},
    {Qt::Key_A, ImGuiKey_A},
    {Qt::Key_C, ImGuiKey_C},
    {Qt::Key_V, ImGuiKey_V},
    {Qt::Key_X, ImGuiKey_X},
    {Qt::Key_Y, ImGuiKey_Y},
    {Qt::Key_Z, ImGuiKey_Z},
}};

}  // namespace

ImGuiLayer::ImGuiLayer() {
  ImGuiContext* previous = ImGui::GetCurrentContext();
  context_ = ImGui::CreateContext();
  ImGui::SetCurrentContext(context_);
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // window positions are not worth a file in the user's folder
  io.LogFilename = nullptr;
  for (int k = 0; k < ImGuiKey_COUNT; ++k) io.KeyMap[k] = k;
  ImGui::StyleColorsDark();
  ImGui::GetStyle().WindowRounding = 4.0f;
  ImGui::SetCurrentContext(previous);
  clock_.start();
}

ImGuiLayer::~ImGuiLayer() {
  // GL objects are released by shutdown_gl() with the context current (the widget does it);
  // without a context there is nothing safe to call, so only the ImGui context goes here.
  ImGui::DestroyContext(context_);
}

void ImGuiLayer::make_current() const { ImGui::SetCurrentContext(context_); }

bool ImGuiLayer::initialize_gl() {
  make_current();
  if (gl_ready_) return true;
  // GLSL 1.30 = OpenGL 3.0, what the backend needs at least (Mesa's llvmpipe under Xvfb has it).
  gl_ready_ = ImGui_ImplOpenGL3_Init("#version 130");
  if (!gl_ready_) log::warn("studio: the ImGui overlay needs OpenGL 3.0; it stays off");
  return gl_ready_;
}

void ImGuiLayer::warm_up(QSize size) {
  if (!gl_ready_) return;
  new_frame(size, 1.0);
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::Begin("warm-up", nullptr, ImGuiWindowFlags_NoSavedSettings);
  ImGui::TextUnformatted("LongLive Studio");
  ImGui::End();
  render();
}

void ImGuiLayer::shutdown_gl() {
  if (!gl_ready_) return;
  make_current();
  ImGui_ImplOpenGL3_Shutdown();
  gl_ready_ = false;
}

void ImGuiLayer::new_frame(QSize size, double device_pixel_ratio) {
  make_current();
  ImGuiIO& io = ImGui::GetIO();
  io.DisplaySize = ImVec2(static_cast<float>(size.width()), static_cast<float>(size.height()));
  io.DisplayFramebufferScale =
      ImVec2(static_cast<float>(device_pixel_ratio), static_cast<float>(device_pixel_ratio));
  const double dt = static_cast<double>(clock_.nsecsElapsed()) / 1e9;
  clock_.restart();
  io.DeltaTime = static_cast<float>(dt > 1e-6 ? dt : 1e-6);
  if (gl_ready_) ImGui_ImplOpenGL3_NewFrame();
  ImGui::NewFrame();
}

void ImGuiLayer::render() {
  make_current();
  ImGui::Render();
  ImDrawData* data = ImGui::GetDrawData();
  vertices_ = data ? data->TotalVtxCount : 0;
  draw_lists_ = data ? data->CmdListsCount : 0;
  if (gl_ready_ && data) ImGui_ImplOpenGL3_RenderDrawData(data);
  // Wheel deltas are per frame: consumed now.
  ImGuiIO& io = ImGui::GetIO();
  io.MouseWheel = io.MouseWheelH = 0;
}

bool ImGuiLayer::mouse_move(QPointF position) {
  make_current();
  ImGuiIO& io = ImGui::GetIO();
  io.MousePos = ImVec2(static_cast<float>(position.x()), static_cast<float>(position.y()));
  return io.WantCaptureMouse;
}

bool ImGuiLayer::mouse_button(Qt::MouseButton button, bool down) {
  make_current();
  ImGuiIO& io = ImGui::GetIO();
  const int index = button == Qt::LeftButton     ? 0
                    : button == Qt::RightButton  ? 1
                    : button == Qt::MiddleButton ? 2
                                                 : -1;
  if (index >= 0) io.MouseDown[index] = down;
  return io.WantCaptureMouse;
}

bool ImGuiLayer::wheel(QPoint angle_delta) {
  make_current();
  ImGuiIO& io = ImGui::GetIO();
  // Qt: 120 units per notch; ImGui: 1.0 per notch.
  io.MouseWheel += static_cast<float>(angle_delta.y()) / 120.0f;
  io.MouseWheelH += static_cast<float>(angle_delta.x()) / 120.0f;
  return io.WantCaptureMouse;
}

bool ImGuiLayer::key(const QKeyEvent& event, bool down) {
  make_current();
  ImGuiIO& io = ImGui::GetIO();
  const Qt::KeyboardModifiers mods = event.modifiers();
  io.KeyCtrl = mods.testFlag(Qt::ControlModifier);
  io.KeyShift = mods.testFlag(Qt::ShiftModifier);
  io.KeyAlt = mods.testFlag(Qt::AltModifier);
  io.KeySuper = mods.testFlag(Qt::MetaModifier);
  for (const auto& [qt_key, imgui_key] : kKeys)
    if (event.key() == qt_key) io.KeysDown[imgui_key] = down;
  if (down && !event.text().isEmpty() && event.text().at(0).isPrint())
    io.AddInputCharactersUTF8(event.text().toUtf8().constData());
  return io.WantCaptureKeyboard;
}

void ImGuiLayer::focus(bool in) {
  make_current();
  ImGui::GetIO().AddFocusEvent(in);
}

}  // namespace longlive::ui
