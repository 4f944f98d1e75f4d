"""CarbonConfig: a bad value is refused at construction, naming the field and what is accepted."""

from __future__ import annotations

import pytest

from hf_eco2ai import CarbonConfig
from hf_eco2ai.errors import ConfigError, UnknownZoneError


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"measurement_interval": 0}, "measurement_interval", "greater than or equal to 0.01"),
        ({"measurement_interval": "often"}, "measurement_interval", "valid number"),
        ({"grid_carbon_intensity": -5}, "grid_carbon_intensity", "greater than 0"),
        ({"cloud_provider": "ibm"}, "cloud_provider", "'aws', 'gcp' or 'azure'"),
        ({"prometheus_port": 70000}, "prometheus_port", "less than or equal to 65535"),
        ({"project_name": ""}, "project_name", "at least 1 character"),
        ({"alert_thresholds": {"co2_per_day": 1}}, "alert_thresholds", "co2_rate_kg_per_hour"),
        ({"alert_thresholds": {"co2_kg": -1}}, "alert_thresholds", "must be > 0"),
        ({"use_real_time_carbon": True}, "carbon_provider", "'uk', 'electricitymaps'"),
        ({"carbon_provider": "bbc"}, "carbon_provider", "'uk', 'electricitymaps' or 'watttime'"),
        ({"measurment_interval": 2}, "measurment_interval", "Extra inputs are not permitted"),
        ({"ram_watts_per_gb": 0}, "ram_watts_per_gb", "greater than 0"),
    ],
)
def test_bad_values_name_the_field_and_what_is_accepted(
    fields: dict[str, object], field: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as err:
        CarbonConfig(**fields)

    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")
    assert hint in str(err.value)


def test_unknown_country_suggests_close_matches() -> None:
    with pytest.raises(UnknownZoneError) as err:
        CarbonConfig(country="Frnace")

    assert err.value.field == "country"
    assert any("FRA" in s for s in err.value.suggestions)


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="measurement_interval"):
        CarbonConfig(measurement_interval=-1)


def test_runbook_monitoring_snippet_is_accepted() -> None:
    config = CarbonConfig(
        measurement_interval=2.0,
        alert_thresholds={"co2_rate_kg_per_hour": 5.0, "energy_rate_kwh_per_hour": 15.0},
        auto_optimization=True,
        country="DEU",
    )

    assert config.measurement_interval == 2.0
    assert config.alert_thresholds["co2_rate_kg_per_hour"] == 5.0


def test_from_env_reads_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ECO2AI_COUNTRY", "FRA")
    monkeypatch.setenv("HF_ECO2AI_MEASUREMENT_INTERVAL", "2.5")

    config = CarbonConfig.from_env(project_name="env")

    assert (config.country, config.measurement_interval, config.project_name) == ("FRA", 2.5, "env")


def test_token_never_appears_in_repr() -> None:
    config = CarbonConfig(country="GBR", carbon_api_token="sekrit-token-123")

    assert "sekrit" not in repr(config)
    assert "sekrit" not in str(config.model_dump())


@pytest.mark.parametrize(
    "field", ["measurement_interval", "grid_carbon_intensity", "cpu_tdp_watts"]
)
def test_nan_and_infinity_are_refused_as_not_finite(field: str) -> None:
    for value in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="finite"):
            CarbonConfig(**{field: value})
