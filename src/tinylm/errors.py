"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class TinyLMError(Exception):
    """A problem with the user's input (data, config, run directory, prompt, device)."""


class ConfigError(TinyLMError):
    """An unknown key, a wrong type or an invalid value in a run configuration."""


class DataError(TinyLMError):
    """A corpus that is missing, empty, not UTF-8 or too short."""


class CheckpointError(TinyLMError):
    """A run directory without a checkpoint, or a checkpoint that cannot be read."""
