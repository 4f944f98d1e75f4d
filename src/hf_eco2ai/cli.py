"""The ``hf-eco2ai`` command line. It prints; the library only logs.

Exit statuses: 0 success, 1 a check failed (budget exceeded), 2 bad input.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hf_eco2ai import __version__

if TYPE_CHECKING:
    from hf_eco2ai.reports.report import CarbonReport

app = typer.Typer(
    name="hf-eco2ai",
    help="Measure, export and control the energy and CO2 of machine-learning training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Country = Annotated[
    str | None, typer.Option(help="ISO 3166 code or name of the country the machine is in.")
]
CpuTdp = Annotated[
    float | None,
    typer.Option(help="Your CPU's TDP in watts, to narrow the CPU estimate where RAPL is closed."),
]
Intensity = Annotated[
    float | None, typer.Option(help="Grid intensity in g CO2eq/kWh; overrides the zone.")
]
MeasurementInterval = Annotated[
    float | None, typer.Option(help="Seconds between samples. [default: 1.0]")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hf-eco2ai: {message}", err=True)
    return typer.Exit(code)


def _config(defaults: dict[str, Any], **fields: Any) -> Any:
    """The run's config: options given win over HF_ECO2AI_<FIELD> variables, which win over
    this command's ``defaults``."""
    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.errors import ConfigError

    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return CarbonConfig.from_env(defaults=defaults, **given)
    except ConfigError as err:
        variable = f"HF_ECO2AI_{err.field.upper()}"
        source = f" (from {variable})" if err.field not in given and variable in os.environ else ""
        raise _fail(f"{err}{source}") from None


def _writable_folder(folder: Path) -> None:
    """Fail before the work starts when the report could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".hf-eco2ai-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _fail(f"cannot write the report to {str(folder)!r}: {err.strerror or err}") from None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def demo(
    output_dir: Annotated[
        Path | None, typer.Option(help="Where the report and series go. [default: demo-output]")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps.")] = 120,
    country: Annotated[
        str | None, typer.Option(help="ISO 3166 code or name of the grid's country. [default: DEU]")
    ] = None,
    grid_carbon_intensity: Intensity = None,
    measurement_interval: MeasurementInterval = None,
    cpu_tdp_watts: CpuTdp = None,
) -> None:
    """Train a small GPT-2-style model on CPU for about a minute, tracked, and print its report."""
    config = _config(
        {
            "project_name": "hf-eco2ai-demo",
            "output_dir": "demo-output",
            "measurement_interval": 1.0,
            "country": "DEU",
        },
        output_dir=None if output_dir is None else str(output_dir),
        country=country,
        grid_carbon_intensity=grid_carbon_intensity,
        measurement_interval=measurement_interval,
        cpu_tdp_watts=cpu_tdp_watts,
    )
    output_dir = Path(config.output_dir)
    _writable_folder(output_dir)
    from hf_eco2ai.demo import run_demo

    report = run_demo(output_dir, max_steps=steps, config=config)
    typer.echo(report.summary())
    typer.echo(f"report: {output_dir / 'carbon_report.json'}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def track(
    ctx: typer.Context,
    project_name: Annotated[
        str | None, typer.Option(help="Project label. [default: hf-training]")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Where the report goes. [default: .]")
    ] = None,
    country: Country = None,
    grid_carbon_intensity: Intensity = None,
    measurement_interval: MeasurementInterval = None,
    cpu_tdp_watts: CpuTdp = None,
) -> None:
    """Run a command under the tracker: hf-eco2ai track [OPTIONS] -- CMD [ARGS]..."""
    cmd = list(ctx.args)
    if not cmd:
        raise _fail("no command given; use: hf-eco2ai track -- python train.py")
    config = _config(
        {"output_dir": ".", "measurement_interval": 1.0},
        project_name=project_name,
        output_dir=None if output_dir is None else str(output_dir),
        country=country,
        grid_carbon_intensity=grid_carbon_intensity,
        measurement_interval=measurement_interval,
        cpu_tdp_watts=cpu_tdp_watts,
    )
    output_dir = Path(config.output_dir)
    _writable_folder(output_dir)
    from hf_eco2ai.cli_track import track_command

    try:
        code, report = track_command(cmd, config)
    except OSError as err:
        # As shells do: 127 when the command is not found, 126 when it cannot be executed.
        code = 127 if isinstance(err, FileNotFoundError) else 126
        raise _fail(f"could not run {cmd[0]!r}: {err}", code) from None
    typer.echo(report.summary(), err=True)
    raise typer.Exit(code)


def _load(path: Path) -> CarbonReport:
    from hf_eco2ai.reports.report import CarbonReport

    try:
        return CarbonReport.load(path)
    except (OSError, ValueError) as err:
        raise _fail(f"cannot read report {str(path)!r}: {err}") from None


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="A carbon_report.json, or the folder holding it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """Print a saved report."""
    loaded = _load(path)
    typer.echo(loaded.to_json() if as_json else loaded.summary())


@app.command("check-budget")
def check_budget(
    report_path: Annotated[
        Path, typer.Option("--report", help="A carbon_report.json or its folder.")
    ],
    max_co2: Annotated[float | None, typer.Option(min=0, help="Budget in kg CO2eq.")] = None,
    max_energy: Annotated[float | None, typer.Option(min=0, help="Budget in kWh.")] = None,
) -> None:
    """Exit 1 when a saved run went over its CO2 or energy budget (for CI gates)."""
    if max_co2 is None and max_energy is None:
        raise _fail("give --max-co2 (kg) and/or --max-energy (kWh)")
    loaded = _load(report_path)
    over = []
    if max_co2 is not None and loaded.co2_kg > max_co2:
        over.append(f"CO2 {loaded.co2_kg:.6g} kg > budget {max_co2:g} kg")
    if max_energy is not None and loaded.energy_kwh > max_energy:
        over.append(f"energy {loaded.energy_kwh:.6g} kWh > budget {max_energy:g} kWh")
    if over:
        typer.echo("over budget: " + "; ".join(over))
        raise typer.Exit(1)
    summary = {"co2_kg": loaded.co2_kg, "energy_kwh": loaded.energy_kwh}
    typer.echo("within budget: " + json.dumps(summary))


def _register_optional() -> None:
    """Commands that live next to their feature (rules, dashboard, schedule, responder...)."""
    import importlib

    for module in ("hf_eco2ai.ops.cli", "hf_eco2ai.scheduling.cli", "hf_eco2ai.control.cli"):
        try:
            importlib.import_module(module).register(app)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise


_register_optional()


def main() -> None:
    app()
