"""Run any command under the tracker (``hf-eco2ai track -- CMD``)."""

from __future__ import annotations

import logging
import signal
import subprocess
from types import FrameType

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.reports.report import CarbonReport
from hf_eco2ai.tracking.tracker import CarbonTracker

logger = logging.getLogger(__name__)


def shell_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def track_command(cmd: list[str], config: CarbonConfig) -> tuple[int, CarbonReport]:
    """Run ``cmd``, measuring it and its children; returns its exit status and the report.

    SIGINT and SIGTERM are passed on to the command, so that it can stop cleanly; the report is
    then marked ``interrupted``.
    """
    tracker = CarbonTracker(config).start()  # also evaluates config.alert_thresholds
    try:
        process = subprocess.Popen(cmd)
    except OSError as err:
        tracker.mark_stopped("error", {"reason": "command did not start", "error": str(err)})
        tracker.stop()
        raise
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        tracker.mark_stopped("interrupted", {"reason": "signal", "signal": received[0]})
    elif code != 0:
        tracker.mark_stopped("error", {"reason": "command failed", "exit_status": code})
    report: CarbonReport = tracker.stop("completed")
    return shell_status(code), report
