"""The figures of one level (callproof vs dialplan) and their printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import TARGET_A_P99_MS, TARGET_CPU_RATIO, fmt, median, percentile, rounded
from .runner import ModeResult

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def level_figures(cp: ModeResult, dp: ModeResult) -> dict[str, Any]:
    cp_total = cp.per_call_ms(cp.total_cpu_s)
    dp_total = dp.per_call_ms(dp.asterisk_cpu_s)
    cp_net = cp.per_call_ms(cp.net_cpu_s)
    dp_net = dp.per_call_ms(dp.net_cpu_s)
    return {
        "level": cp.level,
        "placed": {"callproof": cp.placed, "dialplan": dp.placed},
        "completed": {"callproof": cp.completed, "dialplan": dp.completed},
        "reached_agents": {"callproof": cp.reached_agents, "dialplan": dp.reached_agents},
        "recordings": {"callproof": cp.recordings, "dialplan": dp.recordings},
        "originate_errors": {"callproof": len(cp.originate_errors), "dialplan": len(dp.originate_errors)},
        "channels_left": {"callproof": cp.channels_left, "dialplan": dp.channels_left},
        "originate_spread_s": {"callproof": round(cp.originate_spread_s, 2),
                               "dialplan": round(dp.originate_spread_s, 2)},
        "calls_up_after_ramp": {"callproof": cp.calls_up_after_ramp, "dialplan": dp.calls_up_after_ramp},
        "window_s": {"callproof": round(cp.window_s, 1), "dialplan": round(dp.window_s, 1)},
        "asterisk_cpus_busy": {"callproof": round(cp.asterisk_cpu_s / cp.window_s, 2) if cp.window_s else None,
                               "dialplan": round(dp.asterisk_cpu_s / dp.window_s, 2) if dp.window_s else None},
        "a_stasis_to_consent_ms": {"n": len(cp.a_ms), "median": rounded(median(cp.a_ms), 1),
                                   "p99": rounded(percentile(cp.a_ms, 99), 1),
                                   "max": rounded(max(cp.a_ms, default=None), 1)},
        "a_app_side_ms": {"median": rounded(median(cp.a_app_ms), 1), "p99": rounded(percentile(cp.a_app_ms, 99), 1)},
        "b_digits_to_mixmonitor_ms": {"n": len(cp.b_ms), "median": rounded(median(cp.b_ms), 1),
                                      "p99": rounded(percentile(cp.b_ms, 99), 1),
                                      "max": rounded(max(cp.b_ms, default=None), 1)},
        "cpu_ms_per_call": {
            "callproof_asterisk": rounded(cp.per_call_ms(cp.asterisk_cpu_s)),
            "callproof_app": rounded(cp.per_call_ms(cp.app_cpu_s)),
            "callproof_total": rounded(cp_total),
            "dialplan_asterisk": rounded(dp_total),
        },
        "cpu_ratio": rounded(cp_total / dp_total if cp_total and dp_total else None, 3),
        "cpu_ms_per_call_net": {"callproof_total": rounded(cp_net), "dialplan_asterisk": rounded(dp_net)},
        "cpu_ratio_net": rounded(cp_net / dp_net if cp_net and dp_net and dp_net > 0 else None, 3),
        "idle_cpu_ms_per_s": {"callproof_asterisk_plus_app": round(cp.idle_rate_ms_per_s, 2),
                              "callproof_app": round(cp.idle_app_cpu_s / cp.idle_s * 1000, 2) if cp.idle_s else None,
                              "dialplan_asterisk": round(dp.idle_rate_ms_per_s, 2)},
        "idle_window_s": round(cp.idle_s, 1),
        "outcomes": cp.outcomes,
        "sms_sent": cp.sms_sent,
        "recordings_finalised": cp.recordings_finalised,
        "callproof_threads_ms_per_call": thread_breakdown(cp),
        "app_log_errors": len(cp.log_errors),
        "app_log_warnings": len(cp.log_warnings),
    }


def thread_breakdown(result: ModeResult) -> dict[str, float]:
    """Per-thread CPU of the app, ms per call.  main = the event loop; the first other thread
    is aiosqlite's worker (opened before anything else starts a thread); later ones are
    asyncio.to_thread workers (recording measurement)."""
    if not result.app_threads_cpu_s or not result.placed:
        return {}
    others = [tid for tid in result.app_threads_cpu_s if tid != result.app_pid]
    out: dict[str, float] = {}
    for tid, cpu in result.app_threads_cpu_s.items():
        label = ("main (event loop)" if tid == result.app_pid else
                 "aiosqlite worker" if tid == others[0] else "to_thread workers")
        out[label] = out.get(label, 0.0) + cpu / result.placed * 1000
    exited = result.app_cpu_s - sum(result.app_threads_cpu_s.values())
    if exited > 0.005:
        out["unattributed (exited threads, tick rounding)"] = exited / result.placed * 1000
    return {k: round(v, 2) for k, v in out.items()}


def thread_summary(result: ModeResult) -> str:
    parts = [f"{k} {v:.2f}" for k, v in thread_breakdown(result).items()]
    return ", ".join(parts) + " ms/call" if parts else "-"


def print_level(fig: dict[str, Any], cp: ModeResult, dp: ModeResult) -> None:
    level = fig["level"]
    a, b, cpu = fig["a_stasis_to_consent_ms"], fig["b_digits_to_mixmonitor_ms"], fig["cpu_ms_per_call"]
    print(f"\n=== {level} concurrent call{'s' if level != 1 else ''} ===")
    print(f"{'':<34}{'callproof':>12}{'dialplan':>12}")
    for label, key in (("calls placed", "placed"), ("calls completed", "completed"),
                       ("reached the agents", "reached_agents"), ("recordings (non-empty)", "recordings"),
                       ("originate errors", "originate_errors"), ("channels left at the end", "channels_left"),
                       ("originate spread (s)", "originate_spread_s"),
                       ("calls up once all placed", "calls_up_after_ramp"), ("window (s)", "window_s"),
                       ("Asterisk CPUs busy (avg)", "asterisk_cpus_busy")):
        print(f"{label:<34}{fig[key]['callproof']:>12}{fig[key]['dialplan']:>12}")
    print(f"{'CPU per call, Asterisk (ms)':<34}{fmt(cpu['callproof_asterisk'], 2):>12}"
          f"{fmt(cpu['dialplan_asterisk'], 2):>12}")
    print(f"{'CPU per call, callproof (ms)':<34}{fmt(cpu['callproof_app'], 2):>12}{'-':>12}")
    print(f"{'CPU per call, total (ms)':<34}{fmt(cpu['callproof_total'], 2):>12}{fmt(cpu['dialplan_asterisk'], 2):>12}")
    idle = fig["idle_cpu_ms_per_s"]
    print(f"{'idle CPU (ms per s)':<34}{idle['callproof_asterisk_plus_app']:>12.2f}{idle['dialplan_asterisk']:>12.2f}"
          f"   (over {fig['idle_window_s']} s idle; callproof's own {fmt(idle['callproof_app'], 2)})")
    net = fig["cpu_ms_per_call_net"]
    print(f"{'CPU per call, total, net of idle':<34}{fmt(net['callproof_total'], 2):>12}"
          f"{fmt(net['dialplan_asterisk'], 2):>12}")
    ratio = fig["cpu_ratio"]
    verdict = "-" if ratio is None else ("OK" if ratio <= TARGET_CPU_RATIO else "ABOVE TARGET")
    print(f"CPU ratio callproof/dialplan: {fmt(ratio, 2)} raw (target <= {TARGET_CPU_RATIO:.2f}: {verdict}), "
          f"{fmt(fig['cpu_ratio_net'], 2)} net of idle")
    a_verdict = ""
    if level >= 200 and a["p99"] is not None:
        a_ok = "OK" if a["p99"] <= TARGET_A_P99_MS else "ABOVE TARGET"
        a_verdict = f" (target p99 <= {TARGET_A_P99_MS:.0f} ms: {a_ok})"
    print(f"(a) StasisStart -> consent PlaybackStarted, Asterisk stamps: median {fmt(a['median'])} ms, "
          f"p99 {fmt(a['p99'])} ms, max {fmt(a['max'])} ms, n={a['n']}{a_verdict}")
    print(f"    same span, app-side clock: median {fmt(fig['a_app_side_ms']['median'])} ms, "
          f"p99 {fmt(fig['a_app_side_ms']['p99'])} ms")
    print(f"(b) last protocol digit finished -> MixMonitorStart: median {fmt(b['median'])} ms, "
          f"p99 {fmt(b['p99'])} ms, max {fmt(b['max'])} ms, n={b['n']}")
    print(f"callproof outcomes {fig['outcomes']}, SMS sent {fig['sms_sent']}, "
          f"recordings finalised {fig['recordings_finalised']}")
    print("callproof CPU by thread: " + thread_summary(cp))
    print(f"app log: {len(cp.log_errors)} error line(s), {len(cp.log_warnings)} warning line(s)")
    for line in (cp.log_errors + cp.log_warnings)[:10]:
        print(f"    {line}")
    for err in (cp.originate_errors + dp.originate_errors)[:5]:
        print(f"    originate: {err}")




def print_asterisk_side(cp: ModeResult, dp: ModeResult, top: int = 25) -> dict[str, Any]:
    """Asterisk's messages per call by taskprocessor, and (--profile perf-asterisk) its CPU by symbol,
    callproof mode beside dialplan mode."""
    out: dict[str, Any] = {}
    if cp.placed and dp.placed:
        print("  Asterisk context switches per call (voluntary/involuntary, threads alive at both ends): "
              + ", ".join(f"{r.mode} {r.asterisk_ctx_switches[0] / r.placed:.0f}"
                          f"/{r.asterisk_ctx_switches[1] / r.placed:.0f}" for r in (cp, dp)))
    for r in (cp, dp):
        for line in r.channel_probe:
            print(f"  {r.mode} channel: {line}")
    if cp.link_counts and cp.link_calls:
        print(f"  callproof's ARI/AMI traffic per call ({cp.link_calls} calls incl. warm-up; "
              "start-up requests included; events as received, i.e. after Asterisk's filters):")
        for name, count in sorted(cp.link_counts.items(), key=lambda kv: (kv[0].split()[0:2], -kv[1])):
            print(f"    {name:<66}{count / cp.link_calls:>10.2f}")
        out["link_counts_per_call"] = {k: round(v / cp.link_calls, 2) for k, v in cp.link_counts.items()}
    if cp.taskprocessors_per_call or dp.taskprocessors_per_call:
        names = sorted(set(cp.taskprocessors_per_call) | set(dp.taskprocessors_per_call),
                       key=lambda n: -(cp.taskprocessors_per_call.get(n, 0) + dp.taskprocessors_per_call.get(n, 0)))
        print(f"  Asterisk taskprocessors, messages per call{'':<28}{'callproof':>10}{'dialplan':>10}")
        for name in names[:top]:
            print(f"    {name:<66}{cp.taskprocessors_per_call.get(name, 0):>10.1f}"
                  f"{dp.taskprocessors_per_call.get(name, 0):>10.1f}")
        out["taskprocessors_per_call"] = {"callproof": cp.taskprocessors_per_call,
                                          "dialplan": dp.taskprocessors_per_call}
    if cp.asterisk_perf_file and dp.asterisk_perf_file:
        from .asterisk_stats import perf_by_symbol

        for sort in ("dso", "dso,sym"):
            rows = {r.mode: dict(perf_by_symbol(Path(r.asterisk_perf_file), r.per_call_ms(r.asterisk_cpu_s) or 0.0,
                                                sort=sort, top=200)) for r in (cp, dp)}
            names = sorted(set(rows["callproof"]) | set(rows["dialplan"]),
                           key=lambda n: -abs(rows["callproof"].get(n, 0) - rows["dialplan"].get(n, 0)))
            print(f"  Asterisk CPU by {sort} (perf, ms per call; sorted by the difference){'':<8}"
                  f"{'callproof':>10}{'dialplan':>10}{'diff':>8}")
            for name in names[:top]:
                c, d = rows["callproof"].get(name, 0.0), rows["dialplan"].get(name, 0.0)
                print(f"    {name[:74]:<74}{c:>10.2f}{d:>10.2f}{c - d:>+8.2f}")
            out[f"perf_{sort}"] = rows
    return out
