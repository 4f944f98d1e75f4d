"""The ``hf-eco2ai rules`` and ``hf-eco2ai dashboard`` commands; they write a file or stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hf_eco2ai.ops.rules import DEFAULT_RUNBOOK_URL

Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="File to write; stdout when omitted.")
]


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        typer.echo(f"hf-eco2ai: cannot write {str(output)!r}: {err.strerror or err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {output}", err=True)


def rules(
    output: Output = None,
    critical_co2_kg: Annotated[
        float, typer.Option(help="CriticalCarbonEmissions above this run total, kg.")
    ] = 50.0,
    warning_co2_kg: Annotated[
        float | None,
        typer.Option(
            help="CarbonEmissionsWarning above this run total, kg (<= critical). "
            "[default: half the critical threshold]"
        ),
    ] = None,
    rate_kg_per_hour: Annotated[
        float, typer.Option(help="CarbonRateHigh above this rate, kg/h.")
    ] = 8.0,
    budget_warning_fraction: Annotated[
        float, typer.Option(help="CarbonBudgetApproaching at this share.")
    ] = 0.8,
    critical_for: Annotated[
        str, typer.Option("--critical-for", help="'for' of CriticalCarbonEmissions.")
    ] = "1m",
    warning_for: Annotated[
        str, typer.Option("--warning-for", help="'for' of CarbonEmissionsWarning.")
    ] = "30s",
    rate_for: Annotated[str, typer.Option("--rate-for", help="'for' of CarbonRateHigh.")] = "2m",
    budget_for: Annotated[
        str, typer.Option("--budget-for", help="'for' of the budget alerts.")
    ] = "1m",
    interval: Annotated[
        str, typer.Option("--interval", help="Rule group evaluation interval.")
    ] = "15s",
    scrape_interval: Annotated[
        str, typer.Option(help="Scrape interval of the hf-eco2ai job.")
    ] = "15s",
    rate_window: Annotated[str, typer.Option(help="rate() window, >= 4 scrape intervals.")] = "1m",
    total_window: Annotated[
        str,
        typer.Option(help="Look-back of a run's reset-proof total; 'none' for the raw counter."),
    ] = "7d",
    runbook_url: Annotated[str, typer.Option(help="runbook_url annotation.")] = DEFAULT_RUNBOOK_URL,
) -> None:
    """Write a Prometheus rule file with the runbook's alerts and the carbon-budget alerts."""
    from hf_eco2ai.errors import ConfigError
    from hf_eco2ai.ops.rules import RuleSettings, render_rules

    try:
        settings = RuleSettings(
            critical_co2_kg=critical_co2_kg,
            critical_for=critical_for,
            warning_co2_kg=warning_co2_kg,
            warning_for=warning_for,
            rate_kg_per_hour=rate_kg_per_hour,
            rate_window=rate_window,
            rate_for=rate_for,
            budget_warning_fraction=budget_warning_fraction,
            budget_for=budget_for,
            evaluation_interval=interval,
            scrape_interval=scrape_interval,
            total_window=None if total_window.lower() == "none" else total_window,
            runbook_url=runbook_url,
        )
    except ConfigError as err:
        typer.echo(f"hf-eco2ai: {err}", err=True)
        raise typer.Exit(2) from None
    _write(render_rules(settings), output)


def dashboard(
    output: Output = None,
    title: Annotated[str, typer.Option(help="Dashboard title.")] = "HF Eco2AI: training carbon",
    uid: Annotated[str, typer.Option(help="Dashboard uid (URL /d/<uid>).")] = "carbon-tracking",
) -> None:
    """Write a Grafana dashboard (JSON model) to import or provision from a file."""
    from hf_eco2ai.ops.dashboard import render_dashboard

    _write(render_dashboard(title, uid), output)


def register(app: typer.Typer) -> None:
    """Add the ``rules`` and ``dashboard`` commands to ``app``."""
    app.command("rules")(rules)
    app.command("dashboard")(dashboard)
