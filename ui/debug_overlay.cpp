#include "debug_overlay.h"

#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace longlive::ui {
namespace {

const ImVec4 kDim(0.65f, 0.65f, 0.65f, 1.0f);
const ImU32 kSwitchColor = IM_COL32(235, 60, 60, 220);
const ImU32 kTransitionColor = IM_COL32(255, 180, 0, 70);
const ImU32 kPresetColor = IM_COL32(90, 170, 255, 230);
const ImVec4 kMissColor(1.0f, 0.7f, 0.2f, 1.0f);     // a switch that waited for the text encoder
const ImVec4 kRegionColor(0.55f, 0.8f, 1.0f, 1.0f);  // region rows of the kernel table

void timings_table(const EngineStats& s, OverlayReport& report) {
  if (s.regions.empty()) {
    ImGui::TextColored(kDim, "no block timed yet");
    return;
  }
  const std::vector<RegionTime>& rows = s.regions;
  double total = 0;
  for (const RegionTime& r : rows) total += r.ms;
  const ImGuiTableFlags flags =
      ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("regions", 3, flags)) return;
  ImGui::TableSetupColumn("region (last block)", ImGuiTableColumnFlags_WidthStretch, 2.2f);
  ImGui::TableSetupColumn("ms", ImGuiTableColumnFlags_WidthStretch, 0.8f);
  ImGui::TableSetupColumn("share", ImGuiTableColumnFlags_WidthStretch, 1.4f);
  ImGui::TableHeadersRow();
  for (const RegionTime& r : rows) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(r.name.c_str());
    ImGui::TableNextColumn();
    ImGui::Text("%.1f", r.ms);
    ImGui::TableNextColumn();
    const float share = total > 0 ? static_cast<float>(r.ms / total) : 0.0f;
    char label[16];
    std::snprintf(label, sizeof label, "%.0f %%", share * 100.0f);
    ImGui::ProgressBar(share, ImVec2(-1.0f, 0.0f), label);
    ++report.regions;
  }
  ImGui::EndTable();
  ImGui::TextColored(kDim, "outside regions: %.0f %% of the DiT span (gaps, host waits)",
                     s.uncovered_fraction * 100.0);
}

// The kernels of the last sampled block: a row per region (its kernels' count, time and share),
// its kernels under it; the full demangled name on hover.
void kernels_table(const EngineStats& s, const std::string& note, OverlayReport& report) {
  report.kernels_view = true;
  if (s.kernels.empty()) {
    if (note.empty()) {
      ImGui::TextColored(kDim, "no block sampled yet");
    } else {
      ImGui::TextColored(kDim, "kernels unavailable: %s", note.c_str());
    }
    return;
  }
  struct Sum {
    long long count = 0, graph = 0;
    double ms = 0;
  };
  std::map<std::string, Sum> regions;
  Sum all;
  for (const KernelRow& r : s.kernels) {
    for (Sum* sum : {&regions[r.region], &all}) {
      sum->count += r.count;
      sum->graph += r.graph_count;
      sum->ms += r.total_ms;
    }
  }
  const long long age = s.kernels_block >= 0 ? s.blocks - 1 - s.kernels_block : -1;
  ImGui::Text("block %lld%s: %lld kernels, %lld in CUDA graphs, %.1f ms",
              static_cast<long long>(s.kernels_block),
              age > 0 ? (" (" + std::to_string(age) + " blocks ago)").c_str() : "", all.count,
              all.graph, all.ms);
  // Measured, and not undone by closing the tab (docs/reliability.md): said where it is caused.
  ImGui::TextColored(kDim,
                     "CUPTI, attached for these samples, keeps host memory per kernel launch "
                     "until the app quits (~45 KiB a block at balanced, ~0.7 GiB an hour)");
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_ScrollY;
  if (!ImGui::BeginTable("kernels", 4, flags, ImVec2(0.0f, 260.0f))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("kernel (by region)", ImGuiTableColumnFlags_WidthStretch, 3.0f);
  ImGui::TableSetupColumn("n", ImGuiTableColumnFlags_WidthStretch, 0.5f);
  ImGui::TableSetupColumn("mean ms", ImGuiTableColumnFlags_WidthStretch, 0.7f);
  ImGui::TableSetupColumn("total / share", ImGuiTableColumnFlags_WidthStretch, 1.5f);
  ImGui::TableHeadersRow();
  auto share_bar = [&](double ms) {
    const float share = all.ms > 0 ? static_cast<float>(ms / all.ms) : 0.0f;
    char label[32];
    std::snprintf(label, sizeof label, "%.2f ms %.0f %%", ms, share * 100.0f);
    ImGui::ProgressBar(share, ImVec2(-1.0f, 0.0f), label);
  };
  const std::string* region = nullptr;
  for (const KernelRow& r : s.kernels) {
    if (region == nullptr || *region != r.region) {  // rows arrive grouped by region
      region = &r.region;
      const Sum& sum = regions[r.region];
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextColored(kRegionColor, "%s", r.region.c_str());
      ImGui::TableNextColumn();
      ImGui::Text("%lld", sum.count);
      ImGui::TableNextColumn();
      ImGui::TableNextColumn();
      share_bar(sum.ms);
    }
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::Text("  %s", r.name.c_str());
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", r.full_name.c_str());
    ImGui::TableNextColumn();
    ImGui::Text(r.graph_count > 0 ? "%lld g" : "%lld", static_cast<long long>(r.count));
    ImGui::TableNextColumn();
    ImGui::Text("%.3f", r.mean_ms);
    ImGui::TableNextColumn();
    share_bar(r.total_ms);
    ++report.kernel_rows;
  }
  ImGui::EndTable();
  ImGui::TextColored(kDim, "g: run inside CUDA graphs (filed under the graph launch's region)");
}

void latency_plot(const EngineStats& s, OverlayReport& report) {
  const LatencyHistory& history = s.history;
  const std::vector<float> values = history.ms();
  const float peak = values.empty() ? 1.0f : *std::max_element(values.begin(), values.end());
  char caption[64];
  std::snprintf(caption, sizeof caption, "peak %.0f ms", peak);
  ImGui::TextUnformatted("block latency, last 200 blocks");
  ImGui::TextColored(kDim, "red: prompt switch, amber: transition, blue: preset change");
  ImGui::PlotLines("##block_ms", values.empty() ? nullptr : values.data(),
                   static_cast<int>(values.size()), 0, caption, 0.0f, peak * 1.15f,
                   ImVec2(ImGui::GetContentRegionAvail().x, 90.0f));  // PlotLines: no -1 = fill
  report.plotted_blocks = static_cast<int>(values.size());
  if (values.size() < 2) return;
  // PlotLines spreads the samples over the frame minus its padding; mark events on top.
  const ImVec2 pad = ImGui::GetStyle().FramePadding;
  const ImVec2 lo(ImGui::GetItemRectMin().x + pad.x, ImGui::GetItemRectMin().y + pad.y);
  const ImVec2 hi(ImGui::GetItemRectMax().x - pad.x, ImGui::GetItemRectMax().y - pad.y);
  ImDrawList* draw = ImGui::GetWindowDrawList();
  const float step = (hi.x - lo.x) / static_cast<float>(values.size() - 1);
  size_t i = 0;
  for (const BlockSample& b : history.blocks()) {
    const float x = lo.x + step * static_cast<float>(i++);
    if (b.in_transition) {  // a band over the blocks of a prompt transition
      draw->AddRectFilled(ImVec2(x - step / 2, lo.y), ImVec2(x + step / 2, hi.y), kTransitionColor);
      ++report.transition_markers;
    }
    if (b.prompt_switch) {
      draw->AddLine(ImVec2(x, lo.y), ImVec2(x, hi.y), kSwitchColor, 1.5f);
      ++report.switch_markers;
    }
    if (!b.preset_change.empty()) {  // the restart under a new preset, labelled with its name
      draw->AddLine(ImVec2(x, lo.y), ImVec2(x, hi.y), kPresetColor, 2.0f);
      draw->AddText(ImVec2(x + 3, lo.y), kPresetColor, b.preset_change.c_str());
      ++report.preset_markers;
    }
  }
}

}  // namespace

const char* to_string(PromptSource source) {
  switch (source) {
    case PromptSource::cache:
      return "from the cache (encoded ahead)";
    case PromptSource::encoded:
      return "encoded at the switch";
    case PromptSource::unknown:
      break;
  }
  return "-";
}

PromptSource next_prompt_source(const EngineStats& before, const EngineStats& after,
                                PromptSource last) {
  if (after.history.empty()) return last;
  const bool new_block =
      after.blocks != before.blocks || after.history.added() != before.history.added();
  const BlockSample& block = after.history.blocks().back();
  // The first block of a video, unless a preset change restarted it (no prompt was chosen).
  const bool start = after.blocks == 1 && block.preset_change.empty();
  if (!new_block || !(block.prompt_switch || start)) return last;
  // The counters belong to the session's cache: a new session (engine, preset) counts from 0.
  const bool restarted = after.prompt_cache_hits < before.prompt_cache_hits ||
                         after.prompt_cache_misses < before.prompt_cache_misses;
  const int64_t hits = after.prompt_cache_hits - (restarted ? 0 : before.prompt_cache_hits);
  const int64_t misses = after.prompt_cache_misses - (restarted ? 0 : before.prompt_cache_misses);
  if (misses > 0) return PromptSource::encoded;
  return hits > 0 ? PromptSource::cache : PromptSource::unknown;
}

OverlayReport draw_debug_overlay(const OverlayInput& in) {
  OverlayReport report;
  const EngineStats& s = in.stats;
  ImGui::SetNextWindowPos(ImVec2(10, 10), ImGuiCond_FirstUseEver);
  ImGui::SetNextWindowSize(ImVec2(420, 0), ImGuiCond_FirstUseEver);
  ImGui::SetNextWindowBgAlpha(0.78f);
  if (!ImGui::Begin("Timings  (F1 hides)", nullptr, ImGuiWindowFlags_NoFocusOnAppearing)) {
    ImGui::End();
    return report;
  }
  ImGui::Text("%s  |  preset %s  |  %s", s.state.c_str(), s.preset.c_str(),
              s.device.empty() ? "-" : s.device.c_str());
  if (!s.capability.empty()) ImGui::TextColored(kDim, "  %s", s.capability.c_str());
  for (const auto& line : s.fallbacks) ImGui::TextColored(kMissColor, "  %s", line.c_str());
  ImGui::Text("block %.1f ms   generation %.1f fps   display %.1f fps", s.last_block_ms, s.fps,
              in.display_fps);
  ImGui::Text("frame %lld   blocks %lld   display dropped %lld",
              static_cast<long long>(in.frame_index), static_cast<long long>(s.blocks),
              static_cast<long long>(in.display_dropped));
  if (!in.upload.empty()) ImGui::Text("%s", in.upload.c_str());
  if (!in.upload_note.empty()) ImGui::TextColored(kDim, "  %s", in.upload_note.c_str());
  if (s.device.rfind("cuda", 0) == 0)
    ImGui::Text("GPU memory %.2f GiB (peak %.2f GiB)", in.memory_gib, in.peak_memory_gib);
  else
    ImGui::TextColored(kDim, "GPU memory: - (running on the CPU)");
  ImGui::Separator();
  ImGui::Text("prompt switch: %.0f ms to the first new frame on screen", in.switch_latency_ms);
  ImGui::TextColored(kDim, "  engine: %.0f ms from command to frame ready", s.last_switch_ms);
  if (s.last_input_ms > 0)
    ImGui::Text("input picked: %.0f ms to its first conditioned frame ready", s.last_input_ms);
  ImGui::Text("prompt cache: %lld hits, %lld misses", static_cast<long long>(s.prompt_cache_hits),
              static_cast<long long>(s.prompt_cache_misses));
  if (in.last_switch_source != PromptSource::unknown)
    ImGui::TextColored(in.last_switch_source == PromptSource::cache ? kDim : kMissColor,
                       "  last switch: prompt %s", to_string(in.last_switch_source));
  report.last_switch_source = in.last_switch_source;
  if (in.recording) ImGui::TextColored(ImVec4(0.95f, 0.25f, 0.25f, 1.0f), "recording");
  report.switch_latency_ms = in.switch_latency_ms;
  ImGui::Separator();
  if (s.cuda_graphs)
    ImGui::Text("CUDA graphs: replaying (%lld replays)", static_cast<long long>(s.graph_replays));
  else
    ImGui::TextColored(kDim, "CUDA graphs: off (eager launches)");
  if (s.regions_block >= 0 && s.blocks > 0)
    ImGui::TextColored(kDim, "  regions timed on block %lld (%lld blocks ago)",
                       static_cast<long long>(s.regions_block),
                       static_cast<long long>(s.blocks - 1 - s.regions_block));
  if (s.device.rfind("cuda", 0) == 0)
    ImGui::TextColored(kDim, "  device -> host: %.0f bytes per frame%s (%lld frames copied)",
                       s.d2h_bytes_per_frame,
                       s.d2h_bytes_per_frame == 0 ? " (frames stay on the GPU)" : "",
                       static_cast<long long>(s.host_copied_frames));
  if (ImGui::BeginTabBar("timings")) {
    if (ImGui::BeginTabItem("Regions")) {
      timings_table(s, report);
      ImGui::EndTabItem();
    }
    if (ImGui::BeginTabItem("Kernels", nullptr,
                            in.select_kernels ? ImGuiTabItemFlags_SetSelected : 0)) {
      kernels_table(s, in.kernels_note, report);
      ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
  }
  ImGui::Spacing();
  latency_plot(s, report);
  ImGui::End();
  return report;
}

}  // namespace longlive::ui
