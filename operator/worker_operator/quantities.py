"""Kubernetes resource quantities (``64Mi``, ``1G``, ``1e3``), read and added without I/O.

The API server has already checked the form (``crd.QUANTITY_PATTERN``); this module only
gives a number to what it accepted, for the defaults that depend on another field.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["format_mebibytes", "quantity_value"]

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_FORM = re.compile(
    r"^(?P<number>[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+))"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?([0-9]+([.][0-9]*)?|[.][0-9]+))?$"
)


def quantity_value(text: str | int) -> Decimal:
    """The value of a quantity (bytes, for a size); ``ValueError`` for any other text."""
    match = _FORM.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 64Mi, 1G, 500m)")
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(Decimal(suffix[1:])))


def format_mebibytes(value: Decimal) -> str:
    """``value`` bytes as whole mebibytes, rounded up (``201326592`` → ``192Mi``)."""
    return f"{math.ceil(value / (1024**2))}Mi"
