"""Counts in the words a person reads: "1 trial", "2 trials", "0 boxes" — never "1 trials".

One helper for every message of the tool (``study/`` and the data checks here alike): it lives in the core,
which imports nothing of ``study/``, so both sides can use it.
"""

from __future__ import annotations

# box -> boxes, class -> classes; not "ch", which is /k/ as often as not (epoch -> epochs): pass such plurals
_SIBILANT_ENDINGS = ("s", "x", "z", "sh")
_VOWELS = "aeiou"


def plural(noun: str) -> str:
    """The regular English plural of ``noun``: ``trial`` -> ``trials``, ``box`` -> ``boxes``, ``study`` ->
    ``studies``, ``day`` -> ``days``. Irregular nouns pass their plural to ``counted`` instead."""
    if noun.endswith(_SIBILANT_ENDINGS):
        return f"{noun}es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2].lower() not in _VOWELS:
        return f"{noun[:-1]}ies"
    return f"{noun}s"


def counted(n: int | float, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun`` in agreement: ``counted(1, "trial")`` -> ``"1 trial"``, ``counted(3, "epoch")`` ->
    ``"3 epochs"``, ``counted(0, "frame")`` -> ``"0 frames"``; ``plural_form`` for a noun whose plural is not
    regular (``counted(2, "series", "series")``). A whole float (a count read from Parquet) prints as an int."""
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    return f"{n} {noun if n == 1 else plural_form or plural(noun)}"
