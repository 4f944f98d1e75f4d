"""Prometheus alerting rules for the runbook's alerts and the carbon budget, rendered as YAML.

Pure functions, no I/O: :func:`render_rules` returns the text of a rule file that
``promtool check rules`` accepts. Thresholds are in the metrics' own units (kg, kg per hour).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.exporters.catalogue import ALERT_ACTIVE, CARBON_BUDGET, CO2_TOTAL, RUN_LABELS

#: Where the alerts' ``runbook_url`` points by default: the URL the runbook gives for itself.
DEFAULT_RUNBOOK_URL = "https://docs.terragonlabs.com/runbooks/carbon-emissions"

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(field: str, text: str) -> float:
    """Seconds in a Prometheus duration such as ``1m30s``.

    Raises:
        ConfigError: ``text`` is not a Prometheus duration.
    """
    match = _DURATION.match(text)
    if not text or match is None:
        raise ConfigError(
            field, text, f"{text!r} is not a Prometheus duration; use e.g. 30s, 5m, 1h"
        )
    parts = zip(match.groups(), _UNIT_SECONDS, strict=True)
    return sum(int(count or 0) * unit for count, unit in parts)


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds and timings of the generated rules.

    Attributes:
        critical_co2_kg: CriticalCarbonEmissions fires above this run total (runbook: 50).
        critical_for: How long the critical condition must hold (runbook: 1m).
        warning_co2_kg: CarbonEmissionsWarning fires above this run total; at most
            ``critical_co2_kg``, so the warning comes first. Default: half the critical
            threshold (the runbook's 25 of 50).
        warning_for: How long the warning condition must hold (runbook: 30s).
        rate_kg_per_hour: CarbonRateHigh fires above this emission rate (runbook: 8).
        rate_window: The ``rate()`` window; at least four scrape intervals (runbook: 1m).
        rate_for: How long the rate must stay high (runbook: 2m).
        budget_warning_fraction: CarbonBudgetApproaching fires at this share of the budget.
        budget_for: How long a budget condition must hold.
        evaluation_interval: The group's ``interval``; every ``for`` must be at least this.
        scrape_interval: The scrape interval of the hf-eco2ai job (checks ``rate_window``).
        total_window: Look-back for a run's total that survives counter resets (the total is
            ``increase()`` over this window, summed over the run's processes); None uses the
            runbook's raw ``hf_training_co2_kg_total``, which drops to 0 when a process restarts.
        runbook_url: The ``runbook_url`` annotation.
    """

    critical_co2_kg: float = 50.0
    critical_for: str = "1m"
    warning_co2_kg: float | None = None
    warning_for: str = "30s"
    rate_kg_per_hour: float = 8.0
    rate_window: str = "1m"
    rate_for: str = "2m"
    budget_warning_fraction: float = 0.8
    budget_for: str = "1m"
    evaluation_interval: str = "15s"
    scrape_interval: str = "15s"
    total_window: str | None = "7d"
    runbook_url: str = DEFAULT_RUNBOOK_URL

    def __post_init__(self) -> None:
        if self.warning_co2_kg is None:
            object.__setattr__(self, "warning_co2_kg", self.critical_co2_kg / 2)
        interval = duration_seconds("evaluation_interval", self.evaluation_interval)
        for name in ("critical_for", "warning_for", "rate_for", "budget_for"):
            held = duration_seconds(name, getattr(self, name))
            if 0 < held < interval:
                raise ConfigError(
                    name,
                    getattr(self, name),
                    f"'for' advances only at each evaluation, so {getattr(self, name)!r} would "
                    f"act as {self.evaluation_interval!r}; lower evaluation_interval or raise it",
                )
        self._check_rate_window()
        self._check_thresholds()

    def _check_rate_window(self) -> None:
        scrape = duration_seconds("scrape_interval", self.scrape_interval)
        window = duration_seconds("rate_window", self.rate_window)
        if window < 4 * scrape:
            raise ConfigError(
                "rate_window",
                self.rate_window,
                f"rate() over {self.rate_window!r} sees too few samples at a "
                f"{self.scrape_interval!r} scrape interval; use at least 4 scrape intervals",
            )
        if self.total_window is not None:
            duration_seconds("total_window", self.total_window)

    def _check_thresholds(self) -> None:
        for name in ("critical_co2_kg", "warning_co2_kg", "rate_kg_per_hour"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(name, value, "must be a finite number > 0")
        warning = float(self.warning_co2_kg or 0.0)  # set by __post_init__
        if warning > self.critical_co2_kg:
            raise ConfigError(
                "warning_co2_kg",
                warning,
                f"warning_co2_kg={warning:g} is above critical_co2_kg="
                f"{self.critical_co2_kg:g}, so the warning would fire after the critical alert; "
                "give a warning threshold at or below the critical one",
            )
        if self.evaluation_interval.strip() in {"0", "0s", "0m"}:
            raise ConfigError("evaluation_interval", self.evaluation_interval, "must be > 0")
        if not 0 < self.budget_warning_fraction < 1:
            raise ConfigError(
                "budget_warning_fraction", self.budget_warning_fraction, "must be between 0 and 1"
            )


_BY_RUN = ", ".join(RUN_LABELS)
_WHO = "run {{ $labels.run_id }} of project {{ $labels.project_name }}"


def run_total_expr(settings: RuleSettings) -> str:
    """PromQL for each run's CO2 total in kg, by ``project_name`` and ``run_id``."""
    if settings.total_window is None:
        return CO2_TOTAL.name
    series = f"{CO2_TOTAL.name}[{settings.total_window}]"
    latest, added = f"max_over_time({series})", f"increase({series})"
    # Per series: without a reset its highest value is its total, exactly (increase() would
    # miss what came before Prometheus first saw it, and extrapolate past its end); with a
    # reset, the larger of increase() (which adds back what the reset lost) and that value.
    # The sum merges the series of the run's processes.
    per_series = f"({latest} unless resets({series}) > 0) or ({added} > {latest}) or {latest}"
    return f"sum by ({_BY_RUN}) ({per_series})"


def rate_expr(settings: RuleSettings) -> str:
    """PromQL for each run's emission rate in kg per hour."""
    return f"sum by ({_BY_RUN}) (rate({CO2_TOTAL.name}[{settings.rate_window}])) * 3600"


def budget_used_expr(settings: RuleSettings) -> str:
    """PromQL for the share of its CO2 budget each run has used (1 = all of it)."""
    budget = f"max by ({_BY_RUN}) ({CARBON_BUDGET.name})"
    total = run_total_expr(settings)
    if settings.total_window is None:
        total = f"max by ({_BY_RUN}) ({total})"
    return f"{total} / {budget}"


def _alert(
    name: str, expr: str, held: str, severity: str, summary: str, description: str, url: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": held,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": url},
    }


def alert_rules(settings: RuleSettings) -> list[dict[str, Any]]:
    """The alerting rules as dicts, in the order the rule file lists them."""
    total, url = run_total_expr(settings), settings.runbook_url
    kg = '{{ $value | printf "%.3f" }} kg CO2eq'
    return [
        _alert(
            "CriticalCarbonEmissions",
            f"{total} > {settings.critical_co2_kg:g}",
            settings.critical_for,
            "critical",
            f"Critical carbon emissions: {_WHO}",
            f"The {_WHO} has emitted {kg}, over the critical threshold of "
            f"{settings.critical_co2_kg:g} kg. Consider suspending it.",
            url,
        ),
        _alert(
            "CarbonEmissionsWarning",
            f"{total} > {settings.warning_co2_kg:g}",
            settings.warning_for,
            "warning",
            f"Carbon emissions approaching critical levels: {_WHO}",
            f"The {_WHO} has emitted {kg}, over the warning threshold of "
            f"{settings.warning_co2_kg:g} kg. Review training parameters.",
            url,
        ),
        _alert(
            "CarbonRateHigh",
            f"{rate_expr(settings)} > {settings.rate_kg_per_hour:g}",
            settings.rate_for,
            "warning",
            f"High carbon emission rate: {_WHO}",
            f'The {_WHO} emits {{{{ $value | printf "%.3f" }}}} kg CO2eq per hour over '
            f"{settings.rate_window}, over {settings.rate_kg_per_hour:g} kg/h. Consider "
            "reducing training intensity.",
            url,
        ),
        *_budget_rules(settings),
        _alert(
            "CarbonTrackerAlert",
            f"max by ({_BY_RUN}, alert) ({ALERT_ACTIVE.name}) == 1",
            "0s",
            "warning",
            f"In-process alert {{{{ $labels.alert }}}} active: {_WHO}",
            f"The tracker of the {_WHO} raised its in-process alert {{{{ $labels.alert }}}}.",
            url,
        ),
    ]


def _budget_rules(settings: RuleSettings) -> list[dict[str, Any]]:
    used, url = budget_used_expr(settings), settings.runbook_url
    share = "{{ $value | humanizePercentage }}"
    fraction = settings.budget_warning_fraction
    return [
        _alert(
            "CarbonBudgetApproaching",
            f"{used} >= {fraction:g} < 1",
            settings.budget_for,
            "warning",
            f"Carbon budget {share} used: {_WHO}",
            f"The {_WHO} has used {share} of its CO2 budget (warning at {fraction:.0%}).",
            url,
        ),
        _alert(
            "CarbonBudgetExceeded",
            f"{used} >= 1",
            settings.budget_for,
            "critical",
            f"Carbon budget exceeded: {_WHO}",
            f"The {_WHO} has used {share} of its CO2 budget. Stop it or raise the budget.",
            url,
        ),
    ]


def render_rules(settings: RuleSettings | None = None, group: str = "hf-eco2ai") -> str:
    """The text of a Prometheus rule file holding every alert, in one group.

    The group's ``interval`` is ``settings.evaluation_interval``, so ``for`` durations shorter
    than Prometheus's global one-minute default behave as written.
    """
    settings = settings if settings is not None else RuleSettings()
    body = {
        "groups": [
            {
                "name": group,
                "interval": settings.evaluation_interval,
                "rules": alert_rules(settings),
            }
        ]
    }
    header = "# Generated by `hf-eco2ai rules`; regenerate rather than edit.\n"
    return header + str(yaml.safe_dump(body, sort_keys=False, width=1000))
