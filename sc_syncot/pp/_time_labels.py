"""Times read from text labels (``"12h"``, ``"day 3"``, ``"E8.5"``) and the units they name.

Shared by :mod:`.inputs` (which reads the times) and :mod:`.growth` (which reads their unit), so that both read
the same numbers from the same labels.
"""

from __future__ import annotations

import re
from collections import Counter

# Days in one unit of the time key, for the units ``time_unit`` names.
TIME_UNITS = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0, "week": 7.0}
MINUTES = {"minute": 1, "hour": 60, "day": 1440, "week": 10080}
# Words that name a unit in the name of a time column or beside the numbers of its labels ("time_h", "timeDays",
# "12h", "day 3", "48 hours"; hpf / dpf: hours / days post fertilization, hpi / dpi: post infection). Letters
# that name a unit only in some fields ("m", "w", "e", "p") are left out: they name none.
UNIT_WORDS = {
    "minute": ("min", "mins", "minute", "minutes"),
    "hour": ("h", "hr", "hrs", "hour", "hours", "hpf", "hpi"),
    "day": ("d", "day", "days", "dpf", "dpi"),
    "week": ("wk", "wks", "week", "weeks"),
}
NUMBER = r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?"


def label_numbers(labels: list[str]) -> list[float | None]:
    """The first number in each label (``"day 2"`` -> 2, ``"E8.5"`` -> 8.5, ``"12h"`` -> 12), ``None`` without one."""
    found = [re.search(NUMBER, c) for c in labels]
    return [None if m is None else float(m.group()) for m in found]


def _words(text: str) -> list[str]:
    """Lower-case words of a name: split at anything not a letter and at case changes ("timeHours", "time_h")."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", text)]


def units_named(text: str) -> set[str]:
    """The units that the words of ``text`` name (see :data:`UNIT_WORDS`)."""
    return {unit for w in _words(text) for unit, names in UNIT_WORDS.items() if w in names}


def without_number(label: str) -> str:
    """``label`` with its first number taken out (what is left names its unit, if anything)."""
    return re.sub(NUMBER, " ", label, count=1)


def label_units(labels: list[str]) -> list[set[str]]:
    """The units each label names beside its number (``"8h"`` -> ``{"hour"}``, ``"E8.5"`` -> none)."""
    return [units_named(without_number(lab)) for lab in labels]


def one_unit(labels: list[str], numbers: list[float], time_key: str) -> tuple[list[float], str | None]:
    """The labels' numbers in one unit, and that unit when they named different ones (``"8h"``, ``"1d"``).

    Labels that all name the same units, or none, keep their numbers (``(numbers, None)``), whatever else their
    words say (``"hESC_d0"`` names an hour and a day in every label, and reads 0). Labels that name different units
    must each name exactly one (a zero may name none); all are converted to the unit of the column's name when
    it names one (``time_h``), else to the unit most labels name (the larger one on a tie). Otherwise the labels are
    refused, since ``8h`` and ``1d`` read as 8 and 1 would put them in the wrong order.
    """
    per_label = label_units(labels)
    if all(units == per_label[0] for units in per_label):
        return numbers, None
    named = set().union(*per_label)
    # a zero is zero in any unit ("0", "8h", "1d"); any other label must name exactly one
    unclear = [
        lab for lab, units, n in zip(labels, per_label, numbers, strict=True) if len(units) > 1 or not (units or n == 0)
    ]
    if unclear:
        raise ValueError(
            f"time_key={time_key!r}: its labels name several units ({sorted(named)}), and {unclear} name no unit "
            "or more than one, so they cannot be put in one unit; make it numeric"
        )
    counts = Counter(next(iter(units)) for units in per_label if units)
    from_name = units_named(time_key)
    target = from_name.pop() if len(from_name) == 1 else max(counts, key=lambda u: (counts[u], MINUTES[u]))
    minutes = [MINUTES[next(iter(units))] if units else 0 for units in per_label]
    # whole minutes per unit: 60 min reads exactly 1 h (in days, 1/24 and 1/1440 are rounded)
    return [n * m / MINUTES[target] for n, m in zip(numbers, minutes, strict=True)], target


def label_times(labels: list[str], time_key: str) -> tuple[list[float | None], str | None]:
    """The times the labels hold (``None`` where one holds no number) in one unit, and that unit when converted.

    See :func:`one_unit`: labels naming several units are converted to one, and refused when that is unclear.
    """
    numbers = label_numbers(labels)
    if None in numbers:
        return numbers, None
    return one_unit(labels, numbers, time_key)
