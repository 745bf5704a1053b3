"""Exceptions raised for bad input; each message names the file, column or key at fault."""


class UnlearnError(Exception):
    """Base class of every error the platform raises on purpose."""


class DataError(UnlearnError, ValueError):
    """A dataset is missing, malformed or inconsistent."""


class ModelError(UnlearnError, ValueError):
    """A model directory is missing, unsafe (pickle weights) or inconsistent."""


class ConfigError(UnlearnError, ValueError):
    """A configuration key is unknown, mistyped or holds an impossible value."""


class OutputExistsError(UnlearnError, FileExistsError):
    """An output location already holds a finished result; refuse to overwrite it silently."""
