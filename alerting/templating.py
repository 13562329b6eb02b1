"""Render the Prometheus template subset rule annotations use, the way Prometheus renders it.

Supported: ``{{ $labels.name }}``, ``{{ $value }}``, ``{{ $value | humanize }}``,
``{{ $value | humanizePercentage }}``. Numbers print like Go's ``%v`` of a float64 (``90`` not
``90.0``), so an annotation reads the same from gpufleet's engine and from Prometheus.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_EXPR = re.compile(r"\{\{\s*(\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\$value)\s*(?:\|\s*([A-Za-z]+)\s*)?\}\}")
SUPPORTED_FUNCS = ("humanize", "humanizePercentage")


def go_float(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, 64) with %v's exponent threshold (1e21)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    if "e" not in text:
        return text[:-2] if text.endswith(".0") else text
    mant, _, e = text.partition("e")
    exp = int(e)
    if -4 <= exp < 21:  # Python switches to exponents at 1e16, Go at 1e21
        plain = format(Decimal(text), "f")
        return plain.rstrip("0").rstrip(".") if "." in plain else plain
    return f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _g4(v: float) -> str:
    """Go's fmt %.4g."""
    text = f"{v:.4g}"
    if "e" in text:
        mant, _, e = text.partition("e")
        return f"{mant}e{e[0]}{abs(int(e)):02d}"
    return text


def humanize(v: float) -> str:
    """Prometheus' humanize: SI prefixes, 4 significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return f"{_g4(v)}{prefix}"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}"


def humanize_percentage(v: float) -> str:
    return f"{_g4(v * 100)}%"


def render(template: str, labels: dict[str, str], value: float) -> str:
    """Expand one annotation. Unknown labels render empty, like Prometheus."""

    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        func = m.group(3)
        if func == "humanize":
            return humanize(value)
        if func == "humanizePercentage":
            return humanize_percentage(value)
        return go_float(value)
    return _EXPR.sub(sub, template)


def unsupported(template: str) -> list[str]:
    """Template actions the engine cannot render (rules validation reports them)."""
    out = []
    for m in re.finditer(r"\{\{(.*?)\}\}", template):
        full = m.group(0)
        em = _EXPR.fullmatch(full)
        if em is None or (em.group(3) and em.group(3) not in SUPPORTED_FUNCS):
            out.append(full)
    return out
