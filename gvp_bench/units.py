"""Human units for measured quantities: times in s / ms / µs / ns, memory in B / KiB / MiB / GiB,
ratios as ``1.23x``. Missing values print as an empty string."""

import math

import pandas as pd


def _missing(value):
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def seconds(value):
    """Seconds as text, three significant digits in the largest of s, ms, µs and ns that keeps them at least 1."""
    if _missing(value):
        return ""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def instructions(value):
    """``12345678`` -> ``'12.35 M instr'``."""
    if _missing(value):
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit} instr"
    return f"{value:.0f} instr"


def size_in_bytes(value):
    """``1572864`` -> ``'1.5 MiB'``."""
    if _missing(value):
        return ""
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024


def ratio(value, digits=3):
    """``1.234`` -> ``'1.23x'``; ``1234.5`` -> ``'1234x'`` (no exponent)."""
    if _missing(value):
        return ""
    return f"{value:.{digits}g}x" if abs(value) < 10 ** digits else f"{value:.0f}x"
