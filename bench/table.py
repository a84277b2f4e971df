"""``python -m bench.table``: the README's figures table, built from the saved results in bench/results/."""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.harness import RESULTS_DIR
from bench.throughput import TARGETS_PER_S

__all__ = ["load", "main", "rows"]


def load(quick: bool = False) -> dict[str, dict[str, Any]]:
    """Each benchmark's latest saved result, by name (missing ones are left out)."""
    suffix = "-quick" if quick else ""
    found = {}
    for path in sorted(RESULTS_DIR.glob(f"*{suffix}.json")):
        name = path.stem.removesuffix(suffix)
        if name != "summary" and (quick or not path.stem.endswith("-quick")):
            found[name] = json.loads(path.read_text())
    return found


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "**missed**")


def _driver(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    cb, x = r["callbacks"], r["times_bus_median"]
    anchor = ", ".join(f"{n} {cb[n]['median']:,.1f}" for n in ("json", "csv", "tbx", "aim", "four_builtins"))
    return [("driver us per on_trial_result, median (p99)",
             f"{cb['bus']['median']:.1f} ({cb['bus']['p99']:.1f})",
             anchor + f" ({x['four_builtins']:,.0f}x bus)",
             "<= 10", _met(r["target"]["met"]))]


def _throughput(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out = []
    targets = {t["sinks"]: t for t in r["targets"]}
    for sinks in r["best_per_s"]:
        runs = [x for x in r["runs"] if x["sinks"] == sinks]
        figure = " / ".join(f"{x['delivered_per_s']:,}" for x in runs)
        cpu = " / ".join(f"{x['cpu']['collector_cores']:.2f}+{x['cpu']['producers_cores']:.2f}" for x in runs)
        t = targets.get(sinks)
        out.append((f"results/s into {sinks}, {'/'.join(str(x['producers']) for x in runs)} producers",
                    figure, f"cores collector+producers: {cpu}",
                    f">= {t['target_per_s']:,}" if t else "", _met(t["met"]) if t else ""))
    for sinks, target in TARGETS_PER_S.items():
        if sinks not in r["best_per_s"]:
            out.append((f"results/s into {sinks}", f"no {sinks} sink yet", "", f">= {target:,}", "n/a"))
    floor = r.get("aim_floor")
    if floor:
        out.append(("aim's own floor (Run.track)", f"{floor['floor_results_per_s']:,} results/s",
                    f"{floor['track_us_per_value']} us/value one by one, "
                    f"{floor['dict_track_us_per_value']} as a dict, "
                    f"{floor['values_per_result']} values/result",
                    "Aim sink >= floor/1.2",
                    _met(targets["aim"]["met"]) if "aim" in targets else "no Aim sink yet"))
    return out


def _latency(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [(f"on_trial_result to result.json at {x['rate_per_s']:,}/s, p50 / p99 ms",
             f"{x['latency_ms']['median']} / {x['latency_ms']['p99']}",
             f"{x['seen']:,} of {x['results']:,} lines",
             "p99 < 100" if x["rate_per_s"] == 10_000 else "",
             _met(r["target"]["met"]) if x["rate_per_s"] == 10_000 else "") for x in r["rates"]]


def _isolation(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    b, s, m = r["baseline"], r["with_slow_sink"], r["backlog"]
    return [
        ("JSON+CSV results/s with a slow sink beside them", f"{s['json_csv_delivered_per_s']:,}",
         f"{b['json_csv_delivered_per_s']:,} without ({r['throughput_kept']:.2f} kept)", "unchanged",
         _met(r["throughput_kept"] >= 0.9)),
        ("driver us median with the slow sink", f"{s['driver_us']['median']}",
         f"{b['driver_us']['median']} without ({r['driver_median_ratio']}x)", "unchanged",
         _met(r["driver_median_ratio"] <= 1.2)),
        (f"RSS growth under a {m['events']:,}-event backlog, MiB",
         f"sender {m['sender']['growth_mib']}, collector {m['collector']['growth_mib']}",
         f"bounds {m['sender']['bound_mib']} / {m['collector']['bound_mib']}; lost {m['lost']}; "
         f"built {m['build_s']} s, drained {m['drain_s']} s", "under bounds",
         _met(m["sender"]["within_bound"] and m["collector"]["within_bound"] and m["lost"] == 0)),
    ]


def _sweep(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    by = {x["loggers"]: x for x in r["runs"]}
    v = r["vs_no_loggers"]

    def figure(kind: str) -> str:
        return (f"{by[kind]['wall_s']} / {by[kind]['driver_cpu_s']} "
                f"({v[kind]['wall']}x / {v[kind]['driver_cpu']}x")

    rows = [(f"sweep {r['trials']}x{r['iterations']}: wall s / driver CPU s",
             f"{figure('bus')}; collector {by['bus']['collector_cpu_s']} s CPU;"
             f" sinks {','.join(r['bus_sinks'])})",
             f"none {by['none']['wall_s']} / {by['none']['driver_cpu_s']}; Tune's four "
             f"{by['builtin']['wall_s']} / {by['builtin']['driver_cpu_s']} "
             f"({v['builtin']['wall']}x / {v['builtin']['driver_cpu']}x)",
             "<= 1.1x none", _met(r["target"]["met"]))]
    if "bus_no_aim" in by:
        rows.append(("same sweep, bus writing JSON, CSV and TensorBoard only",
                     f"{figure('bus_no_aim')}; collector {by['bus_no_aim']['collector_cpu_s']} s CPU)",
                     "the Aim sink's CPU, on the same two cores, is the rest", "", ""))
    if "bus_no_collector" in by:
        rows.append(("same sweep, BusCallback with no collector running", f"{figure('bus_no_collector')})",
                     "events kept in memory and the spool, for tunebus replay", "", ""))
    return rows


def _saturation(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    last = r["steps"][-1]
    return [("saturation (JSON+CSV, 2 paced producers)", f"{r['saturation_per_s']:,} results/s",
             f"at {last['offered_per_s']:,}/s offered: p99 {last['ack_latency_ms']['p99']:,} ms, "
             f"{last['spooled_max']:,} spilled to the spool, {r['lost_total']} lost", "nothing lost",
             _met(r["lost_total"] == 0))]


def _sinks(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [(f"{name} sink alone, {r['scalars_per_result']}-scalar results/s", f"{x['ours_per_s']:,}",
             f"Tune's {x['tune_callback']} callback {x['tune_per_s']:,} ({x['speedup']}x)", "", "")
            for name, x in r["sinks"].items()]


def _filters(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    tb = r["tensorboard"]
    return [(f"tensorboard sink with the {name} filter chain, results/s (by CPU time)",
             f"{x['per_s']:,} ({x['cpu_per_s']:,})",
             f"without filters {tb['none']['per_s']:,} ({tb['none']['cpu_per_s']:,}): {x['vs_none']}x "
             f"({x['cpu_vs_none']}x); {x['filter_cpu_us_per_result']} us CPU per result in the filters",
             "", "") for name, x in tb.items() if name != "none"]


BUILDERS = {"driver_cost": _driver, "throughput": _throughput, "latency": _latency, "isolation": _isolation,
            "sweep": _sweep, "saturation": _saturation, "sinks": _sinks, "filters": _filters}


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    for name, build in BUILDERS.items():
        if name in results and "error" not in results[name]:
            out.extend(build(results[name]))
    return out


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    results = load(quick)
    print("| figure | tunebus | anchor (same run) | target | |\n| --- | --- | --- | --- | --- |")
    for row in rows(results):
        print("| " + " | ".join(row) + " |")
    if results:
        m = next(iter(results.values()))["machine"]
        day = min(r["measured_at"] for r in results.values())[:10]
        print(f"\nMeasured {day} on {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, "
              f"Python {m['python']}, {m['platform']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
