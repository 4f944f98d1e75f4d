"""The package's exception hierarchy: one root, structured attributes, remedies in messages."""

from __future__ import annotations


class Eco2AIError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(Eco2AIError, ValueError):
    """A configuration value is wrong; the message names the field and what is accepted.

    Attributes:
        field: The configuration field at fault.
        value: The offending value.
    """

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.value = value


class UnknownZoneError(ConfigError):
    """A country, region or cloud region is not in the bundled table.

    Attributes:
        suggestions: Close matches from the table, best first.
    """

    def __init__(self, field: str, value: str, suggestions: list[str]) -> None:
        hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            field, value, f"{value!r} is not in the bundled grid-intensity table.{hint}"
        )
        self.suggestions = suggestions


class MeterError(Eco2AIError):
    """A meter cannot read its hardware; the tracker degrades to an estimate."""


class IntensityUnavailableError(Eco2AIError):
    """A grid-intensity provider could not answer (network, rate limit, malformed body)."""
