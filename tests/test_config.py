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
        ({"measurement_interval": True}, "measurement_interval", "expected a number"),
        ({"prometheus_port": False}, "prometheus_port", "expected a number"),
        ({"country": ""}, "country", "blank"),
        ({"region": "  "}, "region", "blank"),
        ({"gpu_ids": [-1]}, "gpu_ids", ">= 0"),
        ({"pushgateway_url": "not a url"}, "pushgateway_url", "http:// or https://"),
        ({"alert_webhook_url": "nope"}, "alert_webhook_url", "http:// or https://"),
        ({"carbon_api_base_url": "ftp://mirror"}, "carbon_api_base_url", "http://"),
        ({"contry": "DEU"}, "contry", "did you mean country"),
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


def test_well_formed_urls_are_accepted() -> None:
    config = CarbonConfig(
        pushgateway_url="http://127.0.0.1:9091", alert_webhook_url="https://hooks.example/x"
    )

    assert config.pushgateway_url == "http://127.0.0.1:9091"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0,1", [0, 1]),
        ("[0, 1]", [0, 1]),
        ("GPU-aaaa,GPU-bbbb", ["GPU-aaaa", "GPU-bbbb"]),
        ("3", [3]),
    ],
)
def test_from_env_parses_gpu_id_lists(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[object]
) -> None:
    monkeypatch.setenv("HF_ECO2AI_GPU_IDS", raw)

    assert CarbonConfig.from_env().gpu_ids == expected


@pytest.mark.parametrize("raw", ['{"co2_kg": 5, "energy_kwh": 2.5}', "co2_kg=5, energy_kwh=2.5"])
def test_from_env_parses_alert_thresholds(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HF_ECO2AI_ALERT_THRESHOLDS", raw)

    assert CarbonConfig.from_env().alert_thresholds == {"co2_kg": 5.0, "energy_kwh": 2.5}


@pytest.mark.parametrize("raw", ["{co2_kg: 5", "co2_kg"])
def test_from_env_refuses_unparsable_mappings(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HF_ECO2AI_ALERT_THRESHOLDS", raw)

    with pytest.raises(ConfigError, match="alert_thresholds"):
        CarbonConfig.from_env()


def test_from_env_layers_defaults_environment_and_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ECO2AI_PROJECT_NAME", "from-env")
    defaults = {"project_name": "default", "measurement_interval": 1.0, "country": "DEU"}

    config = CarbonConfig.from_env(defaults=defaults, country="FRA")

    assert (config.project_name, config.measurement_interval, config.country) == (
        "from-env",
        1.0,
        "FRA",
    )


def test_from_env_warns_about_a_misspelt_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_ECO2AI_COUNTY", "DEU")
    monkeypatch.setenv("HF_ECO2AI_RESPONDER_TOKEN", "not a config field, and known")

    with caplog.at_level("WARNING", logger="hf_eco2ai"):
        config = CarbonConfig.from_env()

    assert config.country is None
    assert [r.getMessage() for r in caplog.records if r.name == "hf_eco2ai.config"] == [
        "HF_ECO2AI_COUNTY is not a CarbonConfig field and is ignored; "
        "did you mean HF_ECO2AI_COUNTRY?"
    ]


@pytest.mark.parametrize("bad", ["notaconfig", {"country": "FRA"}, 5])
def test_tracker_and_callback_refuse_what_is_not_a_config(bad: object) -> None:
    from hf_eco2ai import CarbonTracker, Eco2AICallback

    for build in (CarbonTracker, Eco2AICallback):
        with pytest.raises(TypeError, match="takes a CarbonConfig"):
            build(bad)  # type: ignore[arg-type]
