"""``hf-eco2ai schedule`` and ``hf-eco2ai run --low-carbon``: pick a low-carbon start from a
forecast, print it (text or JSON), and optionally wait for it and run a command. Prints; may
sleep; makes HTTP requests to the chosen provider."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hf_eco2ai.errors import ConfigError, Eco2AIError, IntensityUnavailableError

if TYPE_CHECKING:
    from hf_eco2ai.intensity.base import IntensityProvider
    from hf_eco2ai.scheduling.scheduler import LowCarbonScheduler, ScheduleResult, SlotSchedule

PROVIDERS = ("table", "uk", "electricitymaps", "watttime")
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")

Provider = Annotated[
    str, typer.Option(help="Forecast source: table (annual figure), uk, electricitymaps, watttime.")
]
Region = Annotated[
    str,
    typer.Option(
        help="Cloud region, grid region or country (table); national, 1-17 or postcode (uk); "
        "zone (electricitymaps); region (watttime)."
    ),
]
Duration = Annotated[str, typer.Option(help="Job length, e.g. 6h, 90m, 1h30m.")]
Flexibility = Annotated[str, typer.Option(help="How long the start may be delayed, e.g. 8h.")]
StartAfter = Annotated[
    str | None,
    typer.Option(help="Earliest start, ISO 8601 (e.g. 2023-03-16T12:00Z); now if unset."),
]
BaseUrl = Annotated[str | None, typer.Option(help="API base URL (mirror, proxy, test server).")]
MaxIntensity = Annotated[
    float | None, typer.Option(help="Highest acceptable mean intensity, g CO2eq/kWh.")
]
MinSlot = Annotated[
    str | None, typer.Option(help="Plan pause-and-resume slots of at least this length.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def parse_duration(text: str, field: str = "duration") -> timedelta:
    """A strict duration: ``6h``, ``90m``, ``1h30m`` (whole hours and minutes, > 0).

    Raises:
        ConfigError: Anything else (no unit, decimals, spaces, zero).
    """
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ConfigError(field, text, f"{text!r} is not a duration; write e.g. 6h, 90m or 1h30m")
    value = timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))
    if value <= timedelta(0):
        raise ConfigError(field, text, "the duration must be longer than zero")
    return value


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` and ``run`` commands to the main ``hf-eco2ai`` app."""
    app.command("schedule")(schedule_command)
    app.command("run")(run_command)


def schedule_command(
    region: Region,
    duration: Duration,
    flexibility: Flexibility = "8h",
    provider: Provider = "table",
    start_after: StartAfter = None,
    base_url: BaseUrl = None,
    max_intensity: MaxIntensity = None,
    min_slot: MinSlot = None,
    as_json: AsJson = False,
) -> None:
    """Find the lowest-carbon start (or pause-and-resume slots) for a job."""
    try:
        if min_slot is not None:
            slots = _plan_slots(
                provider,
                region,
                duration,
                flexibility,
                start_after,
                base_url,
                max_intensity,
                min_slot,
            )
            typer.echo(json.dumps(slots.to_dict(), indent=2) if as_json else describe_slots(slots))
            return
        result = find_window(
            provider, region, duration, flexibility, start_after, base_url, max_intensity
        )
    except (Eco2AIError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else describe(result))


def run_command(
    command: Annotated[list[str], typer.Argument(help="The command to run, after --.")],
    low_carbon: Annotated[
        bool, typer.Option(help="Wait for the lowest-carbon start first.")
    ] = False,
    region: Annotated[str | None, typer.Option(help="As for schedule.")] = None,
    duration: Annotated[str | None, typer.Option(help="Job length, e.g. 6h.")] = None,
    flexibility: Flexibility = "8h",
    provider: Provider = "table",
    start_after: StartAfter = None,
    base_url: BaseUrl = None,
    max_intensity: MaxIntensity = None,
    no_track: Annotated[
        bool, typer.Option("--no-track", help="Run without the energy tracker.")
    ] = False,
    output_dir: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("."),
    project_name: Annotated[str, typer.Option(help="Project label.")] = "hf-training",
) -> None:
    """Run a command under the tracker, optionally waiting for the lowest-carbon start."""
    if low_carbon:
        if region is None or duration is None:
            raise _fail("--low-carbon needs --region and --duration")
        _wait_for_window(
            provider, region, duration, flexibility, start_after, base_url, max_intensity
        )
    where = {"output_dir": str(output_dir), "project_name": project_name}
    raise typer.Exit(execute(command, provider, region, base_url, track=not no_track, **where))


def find_window(
    provider: str,
    region: str,
    duration: str,
    flexibility: str,
    start_after: str | None,
    base_url: str | None,
    max_intensity: float | None,
) -> ScheduleResult:
    """The best window for the CLI's options (see :class:`LowCarbonScheduler`)."""
    hours = parse_duration(duration).total_seconds() / 3600
    scheduler = _scheduler(provider, region, flexibility, base_url, max_intensity)
    return scheduler.find_low_carbon_window(hours, _start(start_after))


def _plan_slots(
    provider: str,
    region: str,
    duration: str,
    flexibility: str,
    start_after: str | None,
    base_url: str | None,
    max_intensity: float | None,
    min_slot: str,
) -> SlotSchedule:
    hours = parse_duration(duration).total_seconds() / 3600
    slot = parse_duration(min_slot, "min_slot").total_seconds() / 3600
    # Checked before the forecast is fetched; no plan could ever satisfy it.
    if slot > hours:
        raise ConfigError(
            "min_slot",
            min_slot,
            f"the minimum slot {min_slot!r} is longer than the duration {duration!r}; "
            "give a --min-slot no longer than --duration",
        )
    scheduler = _scheduler(provider, region, flexibility, base_url, max_intensity)
    return scheduler.find_low_carbon_slots(hours, _start(start_after), min_slot_hours=slot)


def _scheduler(
    provider: str,
    region: str,
    flexibility: str,
    base_url: str | None,
    max_intensity: float | None,
) -> LowCarbonScheduler:
    from hf_eco2ai.scheduling.scheduler import LowCarbonScheduler

    flex = parse_duration(flexibility, "flexibility").total_seconds() / 3600
    return LowCarbonScheduler(
        region, max_intensity, flex, provider=_provider(provider, region, base_url)
    )


def describe(result: ScheduleResult) -> str:
    """The result as a few plain lines."""
    mean = result.expected_intensity_g_per_kwh
    lines = [
        f"start:    {result.start.isoformat()}",
        f"end:      {result.end.isoformat()}",
        f"expected: {mean:.1f} g CO2eq/kWh ({result.kind})"
        if mean is not None
        else "expected: unknown",
        f"saving:   {result.carbon_reduction:.1%} less CO2 than starting at "
        f"{result.start_after.isoformat()}",
    ]
    if result.max_carbon_intensity is not None:
        verdict = "meets" if result.meets_threshold else "does NOT meet"
        lines.append(f"limit:    {verdict} {result.max_carbon_intensity:g} g CO2eq/kWh")
    lines.append(result.reason)
    return "\n".join(lines)


def describe_slots(schedule: SlotSchedule) -> str:
    """The slot plan as a few plain lines: each slot (UTC), then the mean and the reason."""
    lines = [
        f"{'slots:' if i == 0 else '':<10}{a.isoformat()} to {b.isoformat()} "
        f"({_clock((b - a).total_seconds())})"
        for i, (a, b) in enumerate(schedule.slots)
    ]
    mean = schedule.expected_intensity_g_per_kwh
    if mean is not None:
        lines.append(f"expected: {mean:.1f} g CO2eq/kWh over the slots")
    lines.append(schedule.reason)
    return "\n".join(lines)


def wait_until(
    start: datetime,
    *,
    saving: float,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = typer.echo,
) -> None:
    """Sleep until ``start``, printing the countdown and the expected saving now and then."""
    clock = now or _utc_now
    while (remaining := (start - clock()).total_seconds()) > 0:
        echo(f"Starting in {_clock(remaining)} at {start.isoformat()} ({saving:.1%} less CO2)")
        sleep(min(remaining, 60.0 if remaining <= 3600 else 600.0))


def execute(
    command: list[str],
    provider: str,
    region: str | None,
    base_url: str | None,
    *,
    track: bool,
    **config: Any,
) -> int:
    """Run ``command``; under the tracker unless ``track`` is False. Returns its exit status.

    ``config`` holds further ``CarbonConfig`` fields (``output_dir``, ``project_name``).
    """
    from hf_eco2ai.cli_track import shell_status, track_command

    if not command:
        raise _fail("give the command to run after --")
    try:
        if not track:
            return shell_status(subprocess.run(command, check=False).returncode)
        settings = _tracker_config(provider, region, base_url).model_copy(update=config)
        status, report = track_command(command, settings)
    except OSError as err:
        raise _fail(f"could not run {command[0]!r}: {err}", 127) from None
    typer.echo(report.summary(), err=True)
    return status


def _wait_for_window(
    provider: str,
    region: str,
    duration: str,
    flexibility: str,
    start_after: str | None,
    base_url: str | None,
    max_intensity: float | None,
) -> None:
    try:
        result = find_window(
            provider, region, duration, flexibility, start_after, base_url, max_intensity
        )
    except IntensityUnavailableError as err:
        # Scheduling is an optimisation: when the forecast is unavailable the job runs now.
        typer.echo(f"hf-eco2ai: no forecast ({err}); starting now", err=True)
        return
    except (Eco2AIError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(describe(result))
    wait_until(result.start, saving=result.carbon_reduction)


def _provider(name: str, region: str, base_url: str | None) -> IntensityProvider | None:
    if name not in PROVIDERS:
        raise ConfigError("provider", name, f"use one of {', '.join(PROVIDERS)}")
    if name == "table":
        return None
    from hf_eco2ai.intensity.live import make_live_provider

    return make_live_provider(name, region, base_url=base_url)


def _tracker_config(provider: str, region: str | None, base_url: str | None) -> Any:
    from hf_eco2ai.config import CarbonConfig

    if region is None:
        return CarbonConfig()
    if provider == "table":
        from hf_eco2ai.scheduling.scheduler import table_lookup

        return CarbonConfig(**{table_lookup(region)[0]: region})
    country = {"uk": "GBR"}.get(provider)
    return CarbonConfig(
        country=country,
        use_real_time_carbon=True,
        carbon_provider=provider,
        carbon_zone=region,
        carbon_api_base_url=base_url,
    )


def _utc_now() -> datetime:
    from hf_eco2ai.intensity.live import utc_now

    return utc_now()


def _start(text: str | None) -> datetime | None:
    # httpx comes with the live module: imported only when a command needs it.
    from hf_eco2ai.intensity.live import parse_utc

    if text is None:
        return None
    try:
        return parse_utc(text)
    except ValueError:
        raise ConfigError(
            "start_after", text, "give an ISO 8601 time with its zone, e.g. 2023-03-16T12:00Z"
        ) from None


def _clock(seconds: float) -> str:
    minutes = int(seconds // 60)
    return (
        f"{minutes // 60}h{minutes % 60:02d}m"
        if minutes >= 60
        else f"{minutes}m{int(seconds % 60):02d}s"
    )


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hf-eco2ai: {message}", err=True)
    return typer.Exit(code)
