"""Tracker costs against CodeCarbon, measured side by side in one run (issue 2's benchmark).

Prints medians and ratios (baseline / ours: above 1 means we are cheaper):
- sampler CPU time per tracked minute while the tracked code sleeps, at a 1 s interval;
- time to start tracking;
- the Trainer callback's hot path per step against an empty callback;
- ``import hf_eco2ai`` in a fresh interpreter, and whether it pulls in torch or transformers;
- a short CPU training run with no tracker, our callback, and CodeCarbon's, alternated.

Run: ``.venv/bin/python benchmarks/bench_tracker.py [--quick]`` (CodeCarbon: ``pip install codecarbon``).
"""

from __future__ import annotations

import argparse
import json
import statistics

from _common import row, run_python

SLEEP_CHILD = """
import json, os, resource, time, logging
logging.disable(logging.WARNING)
kind, seconds = {kind!r}, {seconds}
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
if kind == "ours":
    from hf_eco2ai import CarbonConfig, CarbonTracker
    t0 = time.perf_counter()
    tracker = CarbonTracker(CarbonConfig(country="DEU", measurement_interval=1.0, save_report=False)).start()
    started = time.perf_counter() - t0
    time.sleep(2.0)  # steady state: start-up work on the sampler thread is not per-minute cost
    c0 = cpu(); time.sleep(seconds); c1 = cpu()
    tracker.stop()
elif kind == "codecarbon":
    from codecarbon import OfflineEmissionsTracker
    t0 = time.perf_counter()
    tracker = OfflineEmissionsTracker(country_iso_code="DEU", measure_power_secs=1, save_to_file=False,
                                      log_level="error", tracking_mode="process")
    tracker.start()
    started = time.perf_counter() - t0
    time.sleep(2.0)
    c0 = cpu(); time.sleep(seconds); c1 = cpu()
    tracker.stop()
else:
    started = 0.0
    c0 = cpu(); time.sleep(seconds); c1 = cpu()
print(json.dumps({{"cpu_per_minute": (c1 - c0) * 60 / seconds, "start": started}}))
"""

HOT_PATH_CHILD = """
import json, timeit, statistics
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from hf_eco2ai import CarbonConfig, Eco2AICallback
from hf_eco2ai.tracking.tracker import CarbonTracker
args = TrainingArguments(output_dir="/tmp/hf-eco2ai-bench", use_cpu=True, report_to="none")
state, control = TrainerState(), TrainerControl()
state.is_world_process_zero = True
ours = Eco2AICallback(CarbonConfig(country="DEU", save_report=False, measurement_interval=60))
ours.on_train_begin(args, state, control)
empty = TrainerCallback()
def step(cb):
    state.global_step += 1
    cb.on_step_begin(args, state, control)
    cb.on_step_end(args, state, control)
def log(cb):
    cb.on_log(args, state, control, logs={{"loss": 1.0, "learning_rate": 1e-3}})
def per_call(fn, cb, n):
    return statistics.median(timeit.repeat(lambda: fn(cb), number=n, repeat=7)) / n * 1e6
out = {{"step_ours": per_call(step, ours, 20000), "step_empty": per_call(step, empty, 20000),
       "log_ours": per_call(log, ours, 2000), "log_empty": per_call(log, empty, 2000)}}
ours.tracker.stop()
print(json.dumps(out))
"""

IMPORT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import hf_eco2ai
took = time.perf_counter() - t0
heavy = sorted(m for m in ("torch", "transformers", "pydantic", "numpy") if m in sys.modules)
print(json.dumps({{"seconds": took, "heavy": heavy}}))
"""

TRAIN_CHILD = """
import json, time, logging
logging.disable(logging.WARNING)
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error()
from hf_eco2ai.demo import build_model, build_trainer
kind, steps = {kind!r}, {steps}
callbacks, cc = [], None
if kind == "ours":
    from hf_eco2ai import CarbonConfig, Eco2AICallback
    callbacks = [Eco2AICallback(CarbonConfig(country="DEU", measurement_interval=1.0, save_report=False))]
trainer = build_trainer("/tmp/hf-eco2ai-bench", max_steps=steps, batch_size=4, logging_steps=5,
                        callbacks=callbacks, model=build_model(layers=2, width=64, heads=2))
t0 = time.perf_counter()
if kind == "codecarbon":
    from codecarbon import OfflineEmissionsTracker
    cc = OfflineEmissionsTracker(country_iso_code="DEU", measure_power_secs=1, save_to_file=False,
                                 log_level="error")
    cc.start()
trainer.train()
if cc is not None:
    cc.stop()
print(json.dumps({{"seconds": time.perf_counter() - t0}}))
"""


TASKS_CHILD = """
import json, logging, statistics, time
logging.disable(logging.WARNING)
from hf_eco2ai import CarbonConfig, CarbonTracker
cfg = CarbonConfig(country="DEU", save_report=False)
def task():
    end = time.perf_counter() + 0.01
    while time.perf_counter() < end:
        pass
def plain(n):
    t = time.perf_counter()
    for _ in range(n):
        task()
    return time.perf_counter() - t
def tracked(n):
    t = time.perf_counter()
    for _ in range(n):
        with CarbonTracker(cfg):
            task()
    return time.perf_counter() - t
tracked(3)
pairs = [(plain({n}), tracked({n})) for _ in range(3)]
print(json.dumps({{"plain": statistics.median(p for p, _ in pairs), "tracked": statistics.median(t for _, t in pairs)}}))
"""

IDLE_CHILD = """
import json, logging, resource, statistics, time
logging.disable(logging.WARNING)
from hf_eco2ai import CarbonConfig, CarbonTracker
def loop():
    t, c = time.perf_counter(), time.thread_time()
    total = 0
    for i in range(6_000_000):
        total += i
    return time.perf_counter() - t, time.thread_time() - c
def process_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
bare = [loop()[0] for _ in range(3)]
tracker = CarbonTracker(CarbonConfig(country="DEU", save_report=False, measurement_interval=1.0)).start()
time.sleep(1.5)
p0 = process_cpu()
runs = [loop() for _ in range(3)]
tracker_cpu = process_cpu() - p0 - sum(c for _, c in runs)
tracker.stop()
print(json.dumps({{"bare": statistics.median(bare), "with": statistics.median(w for w, _ in runs),
                  "tracker_cpu": max(tracker_cpu, 0.0), "wall": sum(w for w, _ in runs)}}))
"""


def tasks(n: int) -> list[str]:
    r = json.loads(run_python(TASKS_CHILD.format(n=n)))
    per_task_ms = (r["tracked"] - r["plain"]) / n * 1e3
    return [
        f"{f'{n} tasks of 10 ms, each tracked':<44} ratio to untracked {r['tracked'] / r['plain']:.3f} "
        f"({per_task_ms:.2f} ms per start+stop)"
    ]


def idle(repeats: int) -> list[str]:
    runs = [json.loads(run_python(IDLE_CHILD.format())) for _ in range(repeats)]
    ratio = statistics.median(r["with"] / r["bare"] for r in runs)
    cpu_share = statistics.median(r["tracker_cpu"] / r["wall"] for r in runs)
    return [
        f"{'CPU-bound loop beside an idle tracker':<44} ratio to no tracker {ratio:.3f}, "
        f"tracker CPU {cpu_share * 100:.2f}% of the loop's wall time"
    ]


def sampler(seconds: float, repeats: int) -> list[str]:
    results: dict[str, list[dict[str, float]]] = {"none": [], "ours": [], "codecarbon": []}
    for _ in range(repeats):  # alternate so that machine noise hits all three alike
        for kind in results:
            results[kind].append(
                json.loads(run_python(SLEEP_CHILD.format(kind=kind, seconds=seconds)))
            )
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in results.items()}
    floor = med["none"]["cpu_per_minute"]
    ours = max(med["ours"]["cpu_per_minute"] - floor, 1e-4)
    theirs = max(med["codecarbon"]["cpu_per_minute"] - floor, 1e-4)
    return [
        row(
            "sampler CPU per tracked minute (1 s interval)",
            ours * 1e3,
            theirs * 1e3,
            "ms",
            "codecarbon",
        ),
        row(
            "start tracking",
            med["ours"]["start"] * 1e3,
            med["codecarbon"]["start"] * 1e3,
            "ms",
            "codecarbon",
        ),
    ]


def hot_path() -> list[str]:
    r = json.loads(run_python(HOT_PATH_CHILD.format()))
    return [
        row(
            "callback per step (step_begin+step_end)",
            r["step_ours"],
            r["step_empty"],
            "us",
            "empty",
        ),
        row("callback on_log", r["log_ours"], r["log_empty"], "us", "empty"),
        f"{'  added per step over an empty callback':<44} {r['step_ours'] - r['step_empty']:.3f} us",
    ]


def import_time(repeats: int) -> list[str]:
    runs = [json.loads(run_python(IMPORT_CHILD.format())) for _ in range(repeats)]
    seconds = statistics.median(r["seconds"] for r in runs)
    return [
        f"{'import hf_eco2ai (fresh interpreter)':<44} {seconds * 1e3:.1f} ms, imports {runs[0]['heavy'] or 'nothing heavy'}"
    ]


def training(steps: int, repeats: int) -> list[str]:
    times: dict[str, list[float]] = {"none": [], "ours": [], "codecarbon": []}
    for _ in range(repeats):
        for kind in times:
            out = run_python(TRAIN_CHILD.format(kind=kind, steps=steps))
            times[kind].append(json.loads(out)["seconds"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        f"{'training run, no tracker':<44} {med['none']:.2f} s (median of {repeats})",
        f"{'training run, hf-eco2ai callback':<44} {med['ours']:.2f} s, ratio to none {med['ours'] / med['none']:.3f}",
        f"{'training run, CodeCarbon':<44} {med['codecarbon']:.2f} s, ratio to none {med['codecarbon'] / med['none']:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    quick = parser.parse_args().quick
    lines = ["== tracker costs (medians; ratio = baseline / ours, above 1 means cheaper) =="]
    lines += import_time(5 if quick else 9)
    lines += hot_path()
    lines += tasks(200 if quick else 1000)
    lines += idle(1 if quick else 3)
    lines += sampler(seconds=5 if quick else 15, repeats=1 if quick else 3)
    lines += training(steps=20 if quick else 40, repeats=1 if quick else 3)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
