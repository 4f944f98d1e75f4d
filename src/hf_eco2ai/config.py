"""``CarbonConfig``: every setting of a tracked run, validated once at construction."""

from __future__ import annotations

import difflib
import json
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hf_eco2ai.errors import ConfigError

logger = logging.getLogger(__name__)

#: Keys accepted in ``alert_thresholds`` and their units.
ALERT_THRESHOLD_KEYS = {
    "co2_rate_kg_per_hour": "kg CO2eq per hour over the trailing window",
    "energy_rate_kwh_per_hour": "kWh per hour over the trailing window",
    "co2_kg": "kg CO2eq since the run started",
    "energy_kwh": "kWh since the run started",
}

#: ``HF_ECO2AI_*`` variables that are not config fields (read by the parts that need them).
OTHER_ENV_NAMES = frozenset({"HOST", "RESPONDER_TOKEN"})

#: Port of the in-process /metrics endpoint. Prometheus owns 9090, the Pushgateway 9091,
#: Alertmanager 9093 and node_exporter 9100; 9466 is unassigned in Prometheus's port registry.
DEFAULT_PROMETHEUS_PORT = 9466


def _new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class CarbonConfig(BaseModel):
    """Settings of a tracked run. Frozen; a wrong value raises :class:`ConfigError` naming it.

    Units are in the field names; intensities are grams CO2eq per kWh.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False, strict=False
    )

    # Identity.
    project_name: str = Field("hf-training", min_length=1, max_length=200)
    run_id: str = Field(default_factory=_new_run_id, min_length=1, max_length=200)

    # Where the electricity comes from (precedence: explicit, cloud region, region, country).
    country: str | None = None
    region: str | None = None
    cloud_provider: Literal["aws", "gcp", "azure"] | None = None
    cloud_region: str | None = None
    grid_carbon_intensity: float | None = Field(None, gt=0, le=2000)
    use_real_time_carbon: bool = False
    carbon_provider: Literal["uk", "electricitymaps", "watttime"] | None = None
    carbon_zone: str | None = None
    carbon_api_base_url: str | None = None
    carbon_api_token: SecretStr | None = None

    # What is measured and how often.
    measurement_interval: float = Field(5.0, ge=0.01, le=3600)
    rate_window_seconds: float = Field(300.0, gt=0, le=86400)
    track_gpu: bool = True
    track_cpu: bool = True
    track_ram: bool = True
    include_dram: bool = True
    gpu_ids: list[int | str] | None = None
    cpu_tdp_watts: float | None = Field(None, gt=0, le=2000)
    ram_watts_per_gb: float = Field(0.375, gt=0, le=10)
    powercap_root: str = "/sys/class/powercap"

    # Outputs.
    output_dir: str | None = None
    save_report: bool = True
    log_to_trainer: bool = True

    # Prometheus.
    export_prometheus: bool = False
    prometheus_port: int = Field(DEFAULT_PROMETHEUS_PORT, ge=0, le=65535)
    prometheus_host: str = "0.0.0.0"
    #: After the run, keep /metrics up until one scrape has seen the final figures, at most this
    #: long; 0 ends at once (the last scrape interval of a short run may then be missed).
    prometheus_linger_seconds: float = Field(0.0, ge=0, le=600)
    pushgateway_url: str | None = None
    push_interval_seconds: float = Field(15.0, gt=0, le=3600)

    # In-process alerts and optimisation.
    alert_thresholds: dict[str, float] = Field(default_factory=dict)
    alert_webhook_url: str | None = None
    auto_optimization: bool = False

    _static_provider: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _config_error(err) from None

    @field_validator(
        "measurement_interval",
        "rate_window_seconds",
        "grid_carbon_intensity",
        "cpu_tdp_watts",
        "ram_watts_per_gb",
        "prometheus_port",
        "prometheus_linger_seconds",
        "push_interval_seconds",
        mode="before",
    )
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads True as 1; a flag given where a number goes is a mistake.
        if isinstance(value, bool):
            raise ConfigError(str(info.field_name), value, f"expected a number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> CarbonConfig:
        for name in ("country", "region", "cloud_region", "carbon_zone"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ConfigError(name, value, f"is blank; leave {name} unset or name one")
        for gpu in self.gpu_ids or []:
            if isinstance(gpu, int) and gpu < 0:
                raise ConfigError("gpu_ids", gpu, f"GPU indices are >= 0, got {gpu!r}")
        for name in ("pushgateway_url", "alert_webhook_url", "carbon_api_base_url"):
            _check_http_url(name, getattr(self, name))
        for key, value in self.alert_thresholds.items():
            if key not in ALERT_THRESHOLD_KEYS:
                accepted = ", ".join(sorted(ALERT_THRESHOLD_KEYS))
                raise ConfigError("alert_thresholds", key, f"{key!r} is not known; use {accepted}")
            if not value > 0:
                raise ConfigError("alert_thresholds", value, f"{key} must be > 0, got {value!r}")
        if self.use_real_time_carbon and self.carbon_provider is None:
            raise ConfigError(
                "carbon_provider",
                None,
                "use_real_time_carbon needs 'uk', 'electricitymaps' or 'watttime'",
            )
        self._static_provider = (self._zone_key(), self._resolve_static())
        return self

    def intensity_provider_static(self) -> Any:
        """The bundled-table provider for this config, resolved once at construction."""
        cached = self._static_provider
        # model_copy(update=...) copies private state without validation: re-resolve if the
        # zone fields changed since.
        if cached is None or cached[0] != self._zone_key():
            self._static_provider = cached = (self._zone_key(), self._resolve_static())
        return cached[1]

    def _zone_key(self) -> tuple[Any, ...]:
        return (
            self.grid_carbon_intensity,
            self.cloud_provider,
            self.cloud_region,
            self.region,
            self.country,
        )

    def _resolve_static(self) -> Any:
        from hf_eco2ai.intensity.table import resolve_zone

        return resolve_zone(
            grid_carbon_intensity=self.grid_carbon_intensity,
            cloud_provider=self.cloud_provider,
            cloud_region=self.cloud_region,
            region=self.region,
            country=self.country,
        )

    @classmethod
    def from_env(
        cls,
        prefix: str = "HF_ECO2AI_",
        *,
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> CarbonConfig:
        """A config from ``defaults``, then ``HF_ECO2AI_<FIELD>`` variables, then ``overrides``.

        Lists (``gpu_ids``) are JSON or comma-separated (``0,1`` or UUIDs); ``alert_thresholds`` is
        a JSON object or ``key=value`` pairs separated by commas. A prefixed variable that names
        no field is warned about, with the closest field names.
        """
        data: dict[str, Any] = dict(defaults or {})
        fields = {name.upper(): name for name in cls.model_fields}
        for key, raw in os.environ.items():
            if not key.startswith(prefix):
                continue
            suffix = key[len(prefix) :]
            name = fields.get(suffix)
            if name is not None:
                data[name] = _parse_env(name, raw)
            elif prefix == "HF_ECO2AI_" and suffix not in OTHER_ENV_NAMES:
                close = difflib.get_close_matches(suffix, list(fields), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
                logger.warning("%s is not a CarbonConfig field and is ignored%s", key, hint)
        data.update(overrides)
        return cls(**data)


def config_or_default(config: object, who: str) -> CarbonConfig:
    """``config``, or ``CarbonConfig()`` for None; anything else is a TypeError naming ``who``."""
    if config is None:
        return CarbonConfig()
    if not isinstance(config, CarbonConfig):
        raise TypeError(
            f"{who} takes a CarbonConfig, got {type(config).__name__} {config!r:.80}; "
            "build one with CarbonConfig(country=...) or CarbonConfig(**settings)"
        )
    return config


def _parse_env(name: str, raw: str) -> Any:
    """An environment string as the field expects it: lists and mappings parsed, else as is."""
    if name == "gpu_ids":
        if raw.strip().startswith("["):
            return _json_env(name, raw)
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return [int(item) if item.isdigit() else item for item in items]
    if name == "alert_thresholds":
        if raw.strip().startswith("{"):
            return _json_env(name, raw)
        pairs = [item.partition("=") for item in raw.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ConfigError(name, raw, "expected JSON or key=value pairs, e.g. co2_kg=5")
        return {key.strip(): value.strip() for key, _, value in pairs}
    return raw


def _json_env(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(name, raw, f"is not valid JSON: {err.msg}") from None


def _check_http_url(name: str, value: str | None) -> None:
    if value is None:
        return
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ConfigError(name, value, f"expected an http:// or https:// URL, got {value!r}")


def _config_error(err: ValidationError) -> ConfigError:
    """Turn pydantic's report into our error: the first problem names the field and the rule."""
    first = err.errors()[0]
    original = first.get("ctx", {}).get("error")
    if isinstance(original, ConfigError):
        return original
    field = ".".join(str(part) for part in first["loc"]) or "CarbonConfig"
    message = f"{first['msg']} (got {first.get('input')!r})"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(field, list(CarbonConfig.model_fields), n=3)
        message += f"; did you mean {', '.join(close)}?" if close else "; see CarbonConfig's fields"
    if len(err.errors()) > 1:
        message += f"; and {len(err.errors()) - 1} more problem(s)"
    return ConfigError(field, first.get("input"), message)
