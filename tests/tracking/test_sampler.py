"""SharedSampler: one thread for every tracker, no overlapping calls, none after remove()."""

from __future__ import annotations

import threading
import time

from hf_eco2ai.tracking.sampler import THREAD_NAME, SharedSampler


class SlowJob:
    """Records call times and how many calls overlapped; each call takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[float, float]] = []
        self.active = 0
        self.max_active = 0
        self.setups = 0
        self._lock = threading.Lock()

    def setup(self) -> None:
        self.setups += 1

    def sample(self) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        began = time.monotonic()
        time.sleep(self.seconds)
        self.calls.append((began, time.monotonic()))
        with self._lock:
            self.active -= 1


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def test_remove_mid_call_waits_and_no_call_follows() -> None:
    sampler = SharedSampler(idle_exit_seconds=0.2)
    job = SlowJob(0.12)
    sampler.add(1, job.sample, 0.05, setup=job.setup)
    time.sleep(0.3)

    assert sampler.remove(1, timeout=5.0)
    removed_at = time.monotonic()
    count = len(job.calls)
    time.sleep(0.3)

    assert job.setups == 1
    assert job.max_active == 1
    assert len(job.calls) == count
    assert all(end <= removed_at for _, end in job.calls)


def test_thread_exits_once_idle_and_restarts_on_demand() -> None:
    sampler = SharedSampler(idle_exit_seconds=0.1)
    job = SlowJob(0.0)
    sampler.add(1, job.sample, 0.01)
    time.sleep(0.05)
    sampler.remove(1)
    thread = sampler.thread
    assert thread is not None
    thread.join(timeout=2.0)

    assert not thread.is_alive()
    sampler.add(2, job.sample, 0.01)
    time.sleep(0.05)
    sampler.remove(2)
    assert len(job.calls) >= 2


def test_jobs_keep_their_own_intervals() -> None:
    sampler = SharedSampler()
    fast, slow = SlowJob(0.0), SlowJob(0.0)
    sampler.add(1, fast.sample, 0.02)
    sampler.add(2, slow.sample, 0.2)
    time.sleep(0.45)
    sampler.remove(1)
    sampler.remove(2)

    assert 2 <= len(slow.calls) <= 4
    assert len(fast.calls) >= 3 * len(slow.calls)
