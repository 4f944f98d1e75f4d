"""Cost of summing the carbon figures across processes, per log step and once at the end.

``python benchmarks/bench_distributed.py [--procs N]``. Starts N CPU processes (default 2) on a
gloo process group on 127.0.0.1, then times, on rank 0, the medians of: one log-step reduction
(``RankReducer.totals``: an all_reduce of 10 float64), the end-of-run gather of every process's
report (``RankReducer.gather``), and, as the baseline, an all_reduce of one float32 (the least a
collective costs here). On GPUs with NCCL the reduction is one small all_reduce on the device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from _common import row  # noqa: E402

from hf_eco2ai.tracking.distributed import RankReducer  # noqa: E402
from hf_eco2ai.tracking.snapshot import TrackerSnapshot  # noqa: E402

REPEATS = 300
GATHERS = 20


def _timed(fn: object, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        dist.barrier()
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def _worker(rank: int, world: int, port: int, results: object) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=world)
    reducer = RankReducer()
    snap = TrackerSnapshot(energy_joules=1234.5, co2_grams=0.5, power_watts=300.0)
    one = torch.zeros(1)
    record = {"energy": {"devices": [{"device": f"gpu:{i}", "joules": 1.0} for i in range(8)]}}
    baseline = _timed(lambda: dist.all_reduce(one), REPEATS)
    reduce_s = _timed(lambda: reducer.totals(snap, 10.0), REPEATS)
    gather_s = _timed(lambda: reducer.gather(record), GATHERS)
    if rank == 0:
        results.put((baseline, reduce_s, gather_s))  # type: ignore[attr-defined]
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    world = parser.parse_args().procs
    from tests.promstack import free_port

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(
        _worker, args=(world, free_port(), results), nprocs=world, start_method="spawn"
    )
    baseline, reduce_s, gather_s = results.get()
    print(f"{world} processes, gloo on 127.0.0.1, medians on rank 0")
    print(
        row(
            "log-step reduction (10 x float64)",
            reduce_s * 1e6,
            baseline * 1e6,
            "us",
            "1-float all_reduce",
        )
    )
    print(
        row(
            "end-of-run gather (report records)",
            gather_s * 1e6,
            baseline * 1e6,
            "us",
            "1-float all_reduce",
        )
    )


if __name__ == "__main__":
    main()
