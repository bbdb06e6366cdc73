"""Kubernetes resource quantities (k8s.io/apimachinery resource.ParseQuantity), as OSCAR reads
a service's ``cpu`` and ``memory`` in types/service.go CreateResources."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


class QuantityError(ValueError):
    """``str()`` is the text resource.ParseQuantity returns."""


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity (``"500m"`` is 0.5, ``"1Gi"`` is 1073741824)."""
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise QuantityError("unable to parse numeric part of quantity") from None
    if suffix in _SUFFIXES:
        return value * _SUFFIXES[suffix]
    exponent = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if not exponent:
        raise QuantityError("unable to parse quantity's suffix")
    return value * Decimal(10) ** int(exponent.group(1))


def millicores(cpu: str) -> int:
    """A CPU quantity in millicores, rounded up as Quantity.MilliValue does."""
    return math.ceil(parse_quantity(cpu) * 1000)


def bytes_of(memory: str) -> int:
    """A memory quantity in bytes, rounded up as Quantity.Value does."""
    return math.ceil(parse_quantity(memory))
