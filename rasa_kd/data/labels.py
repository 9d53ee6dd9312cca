"""The reversible rule that turns a data set's label into a valid Rasa intent name.

Letters and digits of any script and the characters ``_ - . :`` are kept as they are, so ordinary
labels (``affirm``, ``PlayMusic``, ``DESC:manner``) do not change. Every other character (spaces,
``/`` which Rasa reads as a retrieval intent, ``{`` and ``@`` which its ``/intent{...}@0.9`` shortcut
reads, control characters, and ``~`` itself) becomes ``~`` followed by its code point in lower-case
hex: ``~xx`` below U+0100, ``~uxxxx`` below U+10000, ``~Uxxxxxxxx`` above. So ``"not sure"`` becomes
``not~20sure``, and :func:`intent_to_label` gives the label back exactly.
"""
import re

_KEPT_PUNCTUATION = frozenset("_-.:")
_ESCAPE = "~"
_ESCAPED = re.compile(r"~(?:U([0-9a-f]{8})|u([0-9a-f]{4})|([0-9a-f]{2}))")


def _is_kept(char: str, keep: frozenset) -> bool:
    return char != _ESCAPE and (char.isalnum() or char in _KEPT_PUNCTUATION or char in keep)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"~{code:02x}"
    if code < 0x10000:
        return f"~u{code:04x}"
    return f"~U{code:08x}"


def label_to_intent(label: str, keep: str = "") -> str:
    """Return the Rasa intent name for ``label``; characters in ``keep`` are kept as well."""
    if not label:
        raise ValueError("an empty label has no intent name")
    kept = frozenset(keep)
    return "".join(c if _is_kept(c, kept) else _escape(c) for c in label)


def intent_to_label(intent: str) -> str:
    """Invert :func:`label_to_intent`."""
    return _ESCAPED.sub(lambda m: chr(int(next(g for g in m.groups() if g), 16)), intent)
