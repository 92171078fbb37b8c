// Prefetch while typing, through the real window: keys into the prompt box and the blend rows,
// the engine's prompt-cache counters (EngineStats::prompt_cache_hits/misses, the overlay's
// "prompt cache" line) read before and after each Enter.
#include <QApplication>
#include <QDir>
#include <QJsonArray>
#include <QJsonObject>
#include <QTest>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "autotest.h"
#include "driver.h"
#include "main_window.h"

namespace longlive::ui {

using namespace autotest;

namespace {

constexpr int kKeyGapMs = 60;  // a quick typist: well inside the idle time between keys

QJsonObject counters(const EngineStats& s) {
  return {{"hits", static_cast<double>(s.prompt_cache_hits)},
          {"misses", static_cast<double>(s.prompt_cache_misses)},
          {"blocks", static_cast<double>(s.blocks)}};
}

}  // namespace

void run_prefetch_autotest(MainWindow* w, const QString& out_dir) {
  QDir().mkpath(out_dir);
  Checklist check;
  QJsonObject& report = check.report;
  // Every state the engine reports, in order (a prefetch before the start loads the model).
  auto states = std::make_shared<std::vector<std::string>>();
  QObject::connect(w, &MainWindow::engine_stats_changed, [states](const EngineStats& s) {
    if (states->empty() || states->back() != s.state) states->push_back(s.state);
  });
  auto saw_loaded = [states] {
    const auto loading = std::find(states->begin(), states->end(), "loading");
    return loading != states->end() && std::find(loading, states->end(), "idle") != states->end();
  };
  w->activateWindow();
  report["window_active"] = QTest::qWaitForWindowActive(w, 2000);
  PromptEdit* box = w->prompt_edit();
  box->setFocus();
  w->transition_controls()->enter_box()->setCurrentIndex(0);  // Enter: transition
  auto sent = [w] { return w->prompts_prefetched(); };
  auto blocks = [w] { return w->engine_stats().blocks; };
  // The prefetch command is taken at the engine's next block edge and encoded in the background
  // while the block after runs: two more blocks and it is in the cache (the tiny text encoder
  // takes milliseconds, a block far longer).
  auto let_prefetch_land = [&] {
    const int64_t at = blocks();
    return wait_until([&] { return blocks() >= at + 2; }, 90000);
  };
  // Waits for the stats of the block that begins with the next switch; returns them.
  auto stats_after_switch = [&](const EngineStats& before) {
    wait_until(
        [&] {
          return w->engine_stats().history.prompt_switches() > before.history.prompt_switches();
        },
        90000);
    return w->engine_stats();
  };

  // 1. Before the start: a prompt typed key by key sends nothing while the keys come, once
  // after the idle time, and not again; the engine it makes loads the model meanwhile, so Enter
  // starts with the prompt's embeddings in the cache.
  const int64_t sent_before_typing = sent();
  type_text(box, "a red fox running through snow", kKeyGapMs);
  check("typing_sends_nothing", sent() == sent_before_typing);
  check("idle_prompt_sent_before_start",
        wait_until([&] { return sent() == sent_before_typing + 1; }, 5000));
  check("engine_loaded_by_the_prefetch",
        sent() > sent_before_typing && wait_until(saw_loaded, 90000));
  run_events_for(1500);  // the background encode of the tiny model: milliseconds
  check("idle_prompt_sent_once", sent() == sent_before_typing + 1);
  press_key(box, Qt::Key_Return);
  check("started", wait_until([&] { return blocks() >= 1; }, 90000));
  const EngineStats started = w->engine_stats();
  report["after_start"] = counters(started);
  check("start_is_a_cache_hit", started.prompt_cache_hits >= 1 &&
                                    started.prompt_cache_misses == 0 &&
                                    w->view()->last_switch_source() == PromptSource::cache);

  // 2. While the video runs: a new prompt typed, left idle (> 300 ms), Enter: the switch's
  // embeddings come from the cache (a hit, no new miss).
  box->clear();
  const int64_t sent_before_switch = sent();
  type_text(box, "a blue whale in the deep ocean", kKeyGapMs);
  check("typing_sends_nothing_while_running", sent() == sent_before_switch);
  check("idle_prompt_sent_while_running",
        wait_until([&] { return sent() == sent_before_switch + 1; }, 5000));
  let_prefetch_land();
  const EngineStats before_switch = w->engine_stats();
  press_key(box, Qt::Key_Return);
  const EngineStats after_switch = stats_after_switch(before_switch);
  report["before_typed_switch"] = counters(before_switch);
  report["after_typed_switch"] = counters(after_switch);
  check("typed_then_idle_switch_is_a_cache_hit",
        after_switch.prompt_cache_hits > before_switch.prompt_cache_hits &&
            after_switch.prompt_cache_misses == before_switch.prompt_cache_misses);
  // The overlay (F1) says so on its prompt-cache line.
  press_key(w, Qt::Key_F1);
  run_events_for(300);
  report["overlay_last_switch"] = to_string(w->view()->overlay_report().last_switch_source);
  check("overlay_shows_the_hit",
        w->view()->overlay_visible() &&
            w->view()->overlay_report().last_switch_source == PromptSource::cache);
  press_key(w, Qt::Key_F1);
  check("submitted_prompt_not_sent_again", sent() == sent_before_switch + 1);

  // 3. The counters tell the two apart: a prompt typed and entered at once (no idle time) is
  // encoded at the switch, a miss, and the overlay says that too; it is not prefetched after.
  box->clear();
  const int64_t sent_before_quick = sent();
  QTest::keyClicks(box, "a snowy mountain at noon");
  const EngineStats before_quick = w->engine_stats();
  press_key(box, Qt::Key_Return);
  const EngineStats after_quick = stats_after_switch(before_quick);
  report["after_quick_switch"] = counters(after_quick);
  check("quick_switch_is_a_miss",
        after_quick.prompt_cache_misses == before_quick.prompt_cache_misses + 1 &&
            w->view()->last_switch_source() == PromptSource::encoded);
  run_events_for(2 * MainWindow::kPrefetchIdleMs);
  check("quick_prompt_not_prefetched", sent() == sent_before_quick);

  // 4. The blend rows: two typed, left idle, blended: both from the cache.
  BlendList* blend = w->blend_list();
  const int64_t sent_before_rows = sent();
  type_text(blend->row_text(0), "a green forest at dawn", kKeyGapMs);
  type_text(blend->row_text(1), "a city street at night", kKeyGapMs);
  check("blend_rows_sent", wait_until([&] { return sent() == sent_before_rows + 2; }, 5000));
  blend->row_weight(1)->setValue(50);
  let_prefetch_land();
  const EngineStats before_blend = w->engine_stats();
  click(blend->blend_button());
  const EngineStats after_blend = stats_after_switch(before_blend);
  report["after_blend"] = counters(after_blend);
  check("typed_blend_rows_are_cache_hits",
        after_blend.prompt_cache_hits >= before_blend.prompt_cache_hits + 2 &&
            after_blend.prompt_cache_misses == before_blend.prompt_cache_misses);

  click(w->stop_button());
  check("stopped", wait_until([&] { return w->engine_stats().state == "idle"; }, 30000));
  check("no_error_banner", !w->error_visible());
  if (w->error_visible()) report["error_banner"] = w->error_text();
  QJsonArray seen;
  for (const auto& s : *states) seen.append(QString::fromStdString(s));
  report["engine_states"] = seen;
  report["prompts_prefetched"] = static_cast<double>(sent());
  write_report(out_dir, report, check.ok);
  QApplication::exit(check.ok ? 0 : 1);
}

}  // namespace longlive::ui
