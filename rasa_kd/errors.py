"""Exceptions a user can act on: each message says what was found, where, and what is allowed."""


class RasaKDError(Exception):
    """Base class of the errors rasa-kd raises on bad input."""


class ConfigError(RasaKDError, ValueError):
    """A setting has a value that is not allowed; the message names the key."""


class DataError(RasaKDError, ValueError):
    """An input file cannot be read as the expected format; the message names the file and line."""


class ModelLoadError(RasaKDError):
    """A saved model folder is missing, incomplete or corrupted; the message names the file."""
