"""CPU package and DRAM energy from RAPL counters in powercap sysfs (microjoules, wrap-safe).

Side effects: reads files under ``/sys/class/powercap`` (or the given root); writes nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hf_eco2ai.energy.base import Component, DeviceEnergy, EstimateNote
from hf_eco2ai.errors import MeterError
from hf_eco2ai.units import MICROJOULES_PER_JOULE

logger = logging.getLogger(__name__)

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

#: What to tell a user whose ``energy_uj`` files are root-only.
RAPL_ACCESS_REMEDY = (
    "Since the PLATYPUS fix (CVE-2020-8694) energy_uj is readable by root only. To grant read "
    "access until the next reboot: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj ; to make it permanent, add a "
    "systemd-tmpfiles line 'z /sys/class/powercap/intel-rapl:*/energy_uj 0444 - - -' (and the "
    "same for intel-rapl:*:*) or an equivalent udev rule; or run the tracker with "
    "CAP_DAC_READ_SEARCH. Without access, CPU energy is estimated from CPU time and TDP."
)

# Top-level zones are ``intel-rapl:N`` (AMD Zen uses the same names); ``intel-rapl:N:M`` are
# their subzones. ``intel-rapl-mmio:N`` never matches: on some Intel parts it exposes the same
# package counter a second time through MMIO, so reading it too would count the package twice.
_TOP_ZONE = re.compile(r"intel-rapl:(\d+)")
_PACKAGE_NAME = re.compile(r"package-(\d+)")

ReadFile = Callable[[Path], str]

#: No CPU package or its DRAM draws more than this (the largest server parts are ~500 W TDP);
#: a counter step implying more is a glitch or a reset, not energy.
MAX_PLAUSIBLE_ZONE_WATTS = 1000.0


def read_sysfs(path: Path) -> str:
    """Read a small sysfs attribute (the default file reader)."""
    with open(path, encoding="ascii") as handle:
        return handle.read()


@dataclass
class _Zone:
    """Mutable per-zone state, touched only by the sampler thread."""

    device: str
    component: Component
    path: Path
    max_energy_uj: int
    labels: dict[str, str] = field(default_factory=dict)
    last_energy_uj: int = 0
    last_time: float = 0.0
    joules: float = 0.0
    power_watts: float | None = None
    lost: bool = False
    garbage_warned: bool = False
    implausible_steps: int = 0
    slow_warned: bool = False

    def energy(self) -> DeviceEnergy:
        """This zone's figure as the meter contract wants it."""
        return DeviceEnergy(
            device=self.device,
            component=self.component,
            source="measured",
            joules=self.joules,
            joules_low=self.joules,
            joules_high=self.joules,
            power_watts=self.power_watts,
            labels=dict(self.labels),
            lost=self.lost,
        )


def counter_step_uj(previous_uj: int, current_uj: int, max_energy_range_uj: int) -> int:
    """Microjoules between two reads of a counter that wraps at ``max_energy_range_uj``.

    Assumes at most one wrap between the reads: at 500 W a 262 kJ range wraps every ~9 minutes;
    the meter warns when reads come further apart than a wrap at full power.
    """
    if current_uj >= previous_uj:
        return current_uj - previous_uj
    return (max_energy_range_uj - previous_uj) + current_uj


class RaplMeter:
    """Energy of each CPU package (``cpu``) and, optionally, its DRAM (``dram``), measured.

    The counters cover whole sockets: every process on the host is in them.

    Args:
        root: The powercap sysfs directory.
        include_dram: Also measure each package's ``dram`` subzone.
        clock: Monotonic seconds; injected by tests.
        read_file: Reads one sysfs file; injected by tests (they run as root, where file modes
            cannot produce the PermissionError a normal user gets).
    """

    # Shortcoming: RAPL cannot split a socket's energy by process; a shared host over-counts.
    name = "rapl"

    def __init__(
        self,
        root: Path | str = DEFAULT_POWERCAP_ROOT,
        include_dram: bool = True,
        *,
        clock: Callable[[], float] = time.monotonic,
        read_file: ReadFile = read_sysfs,
    ) -> None:
        self._root = Path(root)
        self._include_dram = include_dram
        self._clock = clock
        self._read_file = read_file
        self._zones: list[_Zone] = []

    @property
    def measures_dram(self) -> bool:
        """Whether a DRAM zone is being measured (then RAM must not be estimated as well)."""
        return any(zone.component == "dram" for zone in self._zones)

    @property
    def devices(self) -> list[str]:
        """Device ids being measured, e.g. ``["package-0", "dram-0"]`` (empty before start)."""
        return [zone.device for zone in self._zones]

    def start(self) -> None:
        """Find the package (and DRAM) zones and take each counter's baseline.

        Raises:
            MeterError: No RAPL zones under ``root``, or their counters cannot be read; the
                message says how to grant access.
        """
        zones = self._discover()
        for zone in zones:
            zone.last_energy_uj = self._read_start_counter(zone)
            zone.last_time = self._clock()

        self._zones = zones
        logger.info("Measuring RAPL zones: %s", ", ".join(self.devices))

    def read(self) -> list[DeviceEnergy]:
        """Joules since ``start`` per zone; a zone that stops answering keeps its last figure."""
        for zone in self._zones:
            if not zone.lost:
                self._sample(zone)
        return [zone.energy() for zone in self._zones]

    def notes(self) -> list[EstimateNote]:
        """RAPL figures are measured: nothing to note."""
        return []

    def close(self) -> None:
        """Nothing to release: each read opens and closes its file."""

    def _discover(self) -> list[_Zone]:
        """Package zones and their DRAM subzones, skipping those contained in another."""
        if not self._root.is_dir():
            raise MeterError(
                f"No powercap interface at {str(self._root)!r} (not Linux, a VM or a container "
                "without /sys/class/powercap); CPU energy is estimated instead."
            )
        zones: list[_Zone] = []
        for path in _numbered(self._root.iterdir(), _TOP_ZONE):
            zones.extend(self._zones_of(path))

        if not any(zone.component == "cpu" for zone in zones):
            raise MeterError(
                f"No RAPL package zone (intel-rapl:N named package-N) under {str(self._root)!r}; "
                "CPU energy is estimated instead."
            )
        return zones

    def _zones_of(self, path: Path) -> list[_Zone]:
        """A top-level zone and its DRAM subzone, or nothing for zones we must not add."""
        name = self._read_name(path)
        match = _PACKAGE_NAME.fullmatch(name)
        if match is None:
            # ``psys`` (platform) already contains the packages and DRAM: adding it double counts.
            logger.debug("Skipping RAPL zone %s named %r", path.name, name)
            return []

        package = match.group(1)
        zones = [self._zone(path, name, "cpu", package)]
        sub_pattern = re.compile(re.escape(path.name) + r":(\d+)")
        for sub in _numbered(path.iterdir(), sub_pattern):
            # ``core`` and ``uncore`` are parts of the package counter: adding them double counts.
            if self._include_dram and self._read_name(sub) == "dram":
                zones.append(self._zone(sub, f"dram-{package}", "dram", package))
        return zones

    def _zone(self, path: Path, device: str, component: Component, package: str) -> _Zone:
        max_uj = self._read_int(path / "max_energy_range_uj")
        if max_uj <= 0:
            # Without the range a wrap cannot be told from garbage: measuring would be a guess.
            raise MeterError(
                f"RAPL zone {path.name} reports max_energy_range_uj={max_uj}; its counter cannot "
                "be unwrapped, so CPU energy is estimated instead."
            )
        labels = {"zone": path.name, "package": package}
        return _Zone(device, component, path, max_energy_uj=max_uj, labels=labels)

    def _read_name(self, path: Path) -> str:
        try:
            return self._read_file(path / "name").strip()
        except OSError as err:
            raise MeterError(f"Cannot read RAPL zone name {str(path / 'name')!r}: {err}.") from err

    def _read_int(self, path: Path) -> int:
        try:
            return int(self._read_file(path).strip())
        except PermissionError as err:
            message = f"Cannot read {str(path)!r}: permission denied. {RAPL_ACCESS_REMEDY}"
            raise MeterError(message) from err
        except (OSError, ValueError) as err:
            raise MeterError(f"Cannot read RAPL counter {str(path)!r}: {err}.") from err

    def _read_start_counter(self, zone: _Zone) -> int:
        return self._read_int(zone.path / "energy_uj")

    def _sample(self, zone: _Zone) -> None:
        """Add the counter's step since the last read; a failing read marks the zone lost."""
        now = self._clock()
        try:
            text = self._read_file(zone.path / "energy_uj")
        except OSError as err:
            zone.lost = True
            zone.power_watts = None
            logger.warning(
                "RAPL zone %s stopped answering (%s); keeping the %.1f J measured so far.",
                zone.device,
                err,
                zone.joules,
            )
            return

        energy_uj = _parse_counter(text)
        if energy_uj is None or not 0 <= energy_uj <= zone.max_energy_uj:
            self._warn_garbage(zone, text)
            return

        step_uj = counter_step_uj(zone.last_energy_uj, energy_uj, zone.max_energy_uj)
        step_joules = step_uj / MICROJOULES_PER_JOULE
        elapsed = now - zone.last_time
        if step_joules > MAX_PLAUSIBLE_ZONE_WATTS * max(elapsed, 1e-3):
            self._skip_step(zone, energy_uj, now, step_joules)
            return
        self._warn_if_wraps_can_hide(zone, elapsed)
        zone.joules += step_joules
        zone.power_watts = step_joules / elapsed if elapsed > 0 else zone.power_watts
        zone.last_energy_uj, zone.last_time = energy_uj, now
        zone.implausible_steps = 0

    def _skip_step(self, zone: _Zone, energy_uj: int, now: float, step_joules: float) -> None:
        """Skip a step no CPU could draw; re-base after two in a row (the counter was reset).

        A counter a little below the last read (a firmware glitch) would otherwise count as a
        whole wrap: 262 kJ on Intel. One bad read is bridged by the next good one, losing
        nothing; two in a row mean the counter itself moved, and the gap between is lost.
        """
        self._warn_garbage(zone, f"{energy_uj} (a step of {step_joules:.0f} J)")
        zone.implausible_steps += 1
        if zone.implausible_steps >= 2:
            logger.warning(
                "RAPL zone %s counter was reset; counting again from its new value.", zone.device
            )
            zone.last_energy_uj, zone.last_time = energy_uj, now
            zone.implausible_steps = 0

    def _warn_if_wraps_can_hide(self, zone: _Zone, elapsed: float) -> None:
        # Two wraps between reads look like one: reads must come faster than a full-power wrap.
        wrap_seconds = zone.max_energy_uj / MICROJOULES_PER_JOULE / MAX_PLAUSIBLE_ZONE_WATTS
        if elapsed > wrap_seconds and not zone.slow_warned:
            zone.slow_warned = True
            logger.warning(
                "RAPL zone %s was read %.0f s apart, but its counter can wrap every %.0f s at "
                "full power, and a second wrap would go unseen; set measurement_interval below "
                "%.0f s.",
                zone.device,
                elapsed,
                wrap_seconds,
                wrap_seconds,
            )

    def _warn_garbage(self, zone: _Zone, text: str) -> None:
        if not zone.garbage_warned:
            zone.garbage_warned = True
            logger.warning(
                "RAPL zone %s read %r, not a plausible counter in 0..%d µJ; such samples are "
                "skipped.",
                zone.device,
                text.strip(),
                zone.max_energy_uj,
            )


def _parse_counter(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _numbered(paths: Iterable[Path], pattern: re.Pattern[str]) -> list[Path]:
    """Paths whose name fully matches ``pattern``, in numeric order of its first group."""
    matched = [(int(m.group(1)), p) for p in paths if (m := pattern.fullmatch(p.name))]
    return [path for _, path in sorted(matched)]
