"""Numbers as the reports write them: of a bounded width, whatever their size.

Accuracies and sensitivities are fractions (checked when a record is read), but a further metric
comes from any ``evaluate`` plugin or a hand-edited ``result.json``, and may be any finite float:
``1e300`` written in fixed notation is 301 digits, which a console table can only cut with "…"
and which pushes every other column into a table of its own. So every number of every report
output (console tables, ``report.md``, ``--paper``, ``--confusion``, ``predict``'s summary, the
figures' text) goes through :func:`format_number`: fixed notation with the column's decimals
while it stays narrow, compact scientific notation (``1.0e+300``, ``-2.5e-07``: at most 9
characters) beyond.
"""

from __future__ import annotations

import math

#: From this magnitude on a number is written in scientific notation: a metric of 3 decimals is
#: at most ``-999999.999`` (11 characters) in fixed notation.
LARGE = 1e6
#: Below this non-zero magnitude a further metric (3 decimals) is written in scientific
#: notation, where fixed notation would show ``0.000``. Percentages (1 decimal) are not: a
#: sensitivity below 0.001% is shown as ``0.0`` (their tables read in tenths of a point).
SMALL = 1e-3
#: From this magnitude on a count (images, frames, a plugin's counter) is written in scientific
#: notation: up to 15 digits it is whole, and exact (a float holds every integer up to 2**53).
LARGE_COUNT = 1e15


def format_number(value: float, decimals: int, *, small: float = 0.0, large: float = LARGE) -> str:
    """``value`` with ``decimals`` places (``0.432``, ``62.4``), or as ``1.0e+300`` (one decimal of
    the mantissa) when ``|value| >= large`` or ``0 < |value| < small``. NaN is ``nan`` and an
    infinity ``inf``/``-inf`` (callers show a gap as "–" before asking)."""
    if not math.isfinite(value):
        return str(float(value))
    size = abs(value)
    if size >= large or 0 < size < small:
        return f"{value:.1e}"
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        return text.lstrip("-")  # -0.0, or -0.0001 at 3 decimals: "-0.000" would read as a sign that is not there
    return text if abs(float(text)) < large else f"{value:.1e}"  # 999999.9996 rounds up to 1000000.000


def format_count(value: float) -> str:
    """A count: whole (``1234567``), a mean of counts with one decimal (``12.5``), in scientific
    notation from :data:`LARGE_COUNT` on."""
    return format_number(value, 0 if float(value).is_integer() else 1, large=LARGE_COUNT)
