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


BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT = "BinarySI", "DecimalSI", "DecimalExponent"
_DECIMAL_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T"}
_DECIMAL_SUFFIX |= {15: "P", 18: "E"}
_BINARY_SUFFIX = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_NANO = Decimal("1e-9")


class Quantity:
    """A ``resource.Quantity``: its value (rounded up to nano units, as ParseQuantity does) and
    its format, for ``String()``'s canonical form (``"7Gi"``, ``"500m"``, ``"1524Mi"``)."""

    __slots__ = ("format", "value")

    def __init__(self, value: Decimal | int = 0, format: str = DECIMAL_SI) -> None:
        self.value, self.format = Decimal(value), format

    @classmethod
    def parse(cls, text: str) -> Quantity:
        value = parse_quantity(text)
        match = _QUANTITY.match(text)
        assert match is not None
        suffix = match.group(2)
        if suffix.endswith("i"):
            form = BINARY_SI
        elif suffix[:1] in ("e", "E"):
            form = DECIMAL_EXPONENT
        else:
            form = DECIMAL_SI
        if value != 0:
            value = (value / _NANO).to_integral_value(rounding="ROUND_UP") * _NANO
        if form == BINARY_SI and 0 < abs(value) < 1:
            form = DECIMAL_SI
        return cls(value, form)

    def plus(self, other: Quantity) -> Quantity:
        """``Add``: a zero quantity takes the other's format."""
        return Quantity(self.value + other.value, other.format if not self.value else self.format)

    def minus(self, other: Quantity) -> Quantity:
        """``Sub``: a zero quantity takes the other's format."""
        return Quantity(self.value - other.value, other.format if not self.value else self.format)

    def int_value(self) -> int:
        """``Value()``: rounded up, away from zero."""
        return int(self.value.to_integral_value(rounding="ROUND_UP"))

    def __str__(self) -> str:
        """``String()``/``CanonicalizeBytes``."""
        value = self.value
        if value == 0:
            return "0"
        form = self.format
        if form == BINARY_SI and (-1024 < value < 1024 or value != value.to_integral_value()):
            form = DECIMAL_SI
        if form == BINARY_SI:
            number, power = int(value), 0
            while number % 1024 == 0 and power < len(_BINARY_SUFFIX) - 1:
                number, power = number // 1024, power + 1
            return f"{number}{_BINARY_SUFFIX[power]}"
        # AsCanonicalBytes: an integer mantissa and the largest exponent, a multiple of 3
        exponent = -9
        mantissa = int((value / _NANO).to_integral_value())
        while mantissa % 1000 == 0:
            mantissa, exponent = mantissa // 1000, exponent + 3
        if form == DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
            return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"
