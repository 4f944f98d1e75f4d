"""One background thread per process that samples every running tracker at its own interval.

Starting and stopping a tracker then costs a registration, not a thread start and join (each of
which waits for the other thread to be scheduled, several milliseconds on a busy interpreter).
The thread exits by itself once no tracker has needed it for ``idle_exit_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

THREAD_NAME = "hf-eco2ai-sampler"


@dataclass
class _Job:
    setup: Callable[[], None] | None
    sample: Callable[[], None]
    interval_seconds: float
    next_due: float
    running: bool = False
    removed: bool = False


class SharedSampler:
    """Calls each job's ``setup`` once, then its ``sample`` every ``interval_seconds``.

    Guarantees: a job's callables never run twice at once, and never run after
    :meth:`remove` has returned for it.
    """

    def __init__(self, idle_exit_seconds: float = 1.0) -> None:
        self._idle_exit_seconds = idle_exit_seconds
        self._cond = threading.Condition()
        self._jobs: dict[int, _Job] = {}
        self._thread: threading.Thread | None = None

    def add(
        self,
        key: int,
        sample: Callable[[], None],
        interval_seconds: float,
        setup: Callable[[], None] | None = None,
        first_in_seconds: float = 0.0,
    ) -> None:
        """Register a job; its ``setup`` (then first ``sample``) runs ``first_in_seconds`` on."""
        with self._cond:
            first_due = time.monotonic() + first_in_seconds
            self._jobs[key] = _Job(setup, sample, interval_seconds, first_due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def remove(self, key: int, timeout: float | None = None) -> bool:
        """Unregister a job, waiting for a call in flight; False if that outlasted ``timeout``."""
        with self._cond:
            job = self._jobs.get(key)
            if job is None:
                return True
            job.removed = True
            finished = self._cond.wait_for(lambda: not job.running, timeout)
            self._jobs.pop(key, None)
            self._cond.notify_all()
            return finished

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                if job.setup is not None:
                    setup, job.setup = job.setup, None
                    setup()
                job.sample()
            finally:
                with self._cond:
                    job.running = False
                    job.next_due = time.monotonic() + job.interval_seconds
                    self._cond.notify_all()

    def _next_job(self) -> _Job | None:
        """Wait for the next due job and mark it running; None when the thread should exit."""
        with self._cond:
            idle_since = time.monotonic()
            while True:
                live = [j for j in self._jobs.values() if not j.removed]
                now = time.monotonic()
                if not live:
                    if now - idle_since >= self._idle_exit_seconds:
                        self._thread = None
                        return None
                    self._cond.wait(self._idle_exit_seconds - (now - idle_since))
                    continue
                job = min(live, key=lambda j: j.next_due)
                if job.next_due <= now:
                    job.running = True
                    return job
                self._cond.wait(job.next_due - now)


_shared: SharedSampler | None = None
_shared_lock = threading.Lock()


def shared_sampler() -> SharedSampler:
    """The process's sampler (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedSampler()
        return _shared
