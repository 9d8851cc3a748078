"""Errors that entry points report as one line (no traceback)."""


class ConfigError(ValueError):
    """A bad value in the config or the user's data, found before any expensive work."""
