"""Typed settings with checks whose errors name the key, the value given and what is allowed."""
import copy
import dataclasses
import math
from typing import Any, Callable, Dict, Mapping, Optional, Type, TypeVar

from rasa_kd.errors import ConfigError

T = TypeVar("T")
Check = Callable[[str, Any], Any]  # (key, value) -> normalised value, or raises ConfigError


def setting(default: Any, help: str, check: Check) -> Any:
    """Declare a dataclass field with its help text and its check."""
    metadata = {"help": help, "check": check}
    if dataclasses.is_dataclass(default) or isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def integer(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Check:
    """An int within [minimum, maximum]."""

    def check(key: str, value: Any) -> int:
        allowed = "an integer" + _range_text(minimum, maximum)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be {allowed}, got {_describe(value)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(f"'{key}' must be {allowed}, got {value}")
        return value

    return check


def number(minimum: float, maximum: float, min_inclusive: bool = True, max_inclusive: bool = True) -> Check:
    """A finite float in a range; ints and numeric strings such as '5e-5' (YAML 1.1) are accepted."""
    low = "[" if min_inclusive else "("
    high = "]" if max_inclusive else ")"
    allowed = f"a number in {low}{minimum}, {maximum}{high}"

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be {allowed}, got {_describe(value)}")
        try:
            number_ = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{key}' must be {allowed}, got {_describe(value)}") from None
        too_low = number_ < minimum or (number_ == minimum and not min_inclusive)
        too_high = number_ > maximum or (number_ == maximum and not max_inclusive)
        if not math.isfinite(number_) or too_low or too_high:
            raise ConfigError(f"'{key}' must be {allowed}, got {value}")
        return number_

    return check


def text() -> Check:
    """A non-empty string."""

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"'{key}' must be a non-empty string, got {_describe(value)}")
        return value

    return check


def optional_text() -> Check:
    """None or a non-empty string."""

    def check(key: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"'{key}' must be a non-empty string or null, got {_describe(value)}")
        return value

    return check


def one_of(*choices: Any) -> Check:
    """One value of a fixed list."""

    def check(key: str, value: Any) -> Any:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"'{key}' must be one of {allowed}; got {_describe(value)}")
        return value

    return check


def _range_text(minimum: Optional[int], maximum: Optional[int]) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def from_mapping(cls: Type[T], values: Mapping[str, Any], owner: Optional[str], ignore: tuple = (), prefix: str = "") -> T:
    """Build settings ``cls`` from ``values``, checking every key.

    Errors name the full dotted key (``student.training.epochs``) and start with ``owner``.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    lead = f"{owner}: " if owner else ""
    unknown = sorted(set(values) - set(fields) - set(ignore))
    if unknown:
        names = ", ".join(repr(prefix + name) for name in unknown)
        raise ConfigError(f"{lead}unknown setting(s) {names}; allowed: {', '.join(prefix + f for f in fields)}")
    checked: Dict[str, Any] = {}
    for name, value in values.items():
        if name in fields:
            try:
                checked[name] = fields[name].metadata["check"](prefix + name, value)
            except ConfigError as error:
                raise ConfigError(f"{lead}{error}") from None
    return cls(**checked)


def section(cls: Type[T]) -> Check:
    """A nested mapping checked as settings ``cls``; an instance of ``cls`` passes as it is."""

    def check(key: str, value: Any) -> T:
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' must be a mapping of settings, got {_describe(value)}")
        return from_mapping(cls, value, owner=None, prefix=f"{key}.")

    return check


def mapping() -> Check:
    """A mapping of keys to values, checked later by whoever reads it; null is an empty one."""

    def check(key: str, value: Any) -> dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' must be a mapping of settings, got {_describe(value)}")
        return dict(value)

    return check


def _or_none(inner: Check) -> Check:
    """None, or what ``inner`` accepts."""

    def check(key: str, value: Any) -> Any:
        return None if value is None else inner(key, value)

    return check


def optional_integer(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Check:
    """None or an int within [minimum, maximum]."""
    return _or_none(integer(minimum, maximum))


def optional_one_of(*choices: Any) -> Check:
    """None, or one of ``choices``."""
    return _or_none(one_of(*choices))


def boolean() -> Check:
    """True or False."""

    def check(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {_describe(value)}")
        return value

    return check


def optional_boolean() -> Check:
    """None, True or False."""
    return _or_none(boolean())


def optional_int_list(minimum: int = 0) -> Check:
    """None or a list of ints >= minimum."""

    def check(key: str, value: Any) -> Optional[list]:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
            raise ConfigError(f"'{key}' must be null or a list of integers >= {minimum}, got {_describe(value)}")
        return list(value)

    return check


def defaults(cls: Type) -> Dict[str, Any]:
    """Every setting of ``cls`` with its default, as plain values (nested settings as dicts)."""
    return to_plain(cls())


def to_plain(settings: Any) -> Any:
    """Settings as plain dicts/lists, for YAML and JSON records."""
    return dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings
