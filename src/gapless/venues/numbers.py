"""Exact number handling shared by venue decoders (pure).

Venue frames are decoded with ``msgspec.json.Decoder(float_hook=str)``, so a
JSON number with a fraction or exponent arrives as its exact wire text
(``'0.50930100'``) and an integer as ``int``. Nothing goes through a float.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from gapless.errors import DecodeError

__all__ = ["parse_decimal", "parse_fixed", "parse_int"]

_POW10: list[int] = [10**i for i in range(40)]
_MAX_DIGITS = 36  # hostile-input bound: no real price or quantity is longer


def parse_fixed(value: object, precision: int) -> int:
    """Scaled integer of a wire number at ``precision`` decimals, exactly.

    ``parse_fixed('62807.1', 1) == 628071``; ``parse_fixed('0.00000000', 8) == 0``;
    ``parse_fixed(5, 2) == 500``. Extra fractional digits are accepted only if
    they are zeros (otherwise the value is not on the venue's grid and that is
    a protocol violation). Exponent forms (``1e-08``) go through Decimal.
    Negative values are allowed (ticker ``change``)."""
    if type(value) is str:
        text: str = value
        if len(text) > _MAX_DIGITS:
            raise DecodeError(f"number too long: {text[:40]!r}")
        dot = text.find(".")
        if dot >= 0 and "e" not in text and "E" not in text:
            frac = text[dot + 1 :]
            n = len(frac)
            if n <= precision:
                try:
                    return int(text[:dot] + frac) * _POW10[precision - n]
                except ValueError as exc:
                    raise DecodeError(f"not a number: {text!r}") from exc
            head, tail = frac[:precision], frac[precision:]
            if tail.strip("0"):
                raise DecodeError(f"{text!r} has more than {precision} decimals")
            try:
                return int(text[:dot] + head)
            except ValueError as exc:
                raise DecodeError(f"not a number: {text!r}") from exc
        try:
            dec = Decimal(text)
        except InvalidOperation as exc:
            raise DecodeError(f"not a number: {text!r}") from exc
        return _decimal_to_fixed(dec, precision, text)
    if type(value) is int:
        if abs(value) >= _POW10[_MAX_DIGITS - 1]:
            raise DecodeError("integer out of range")
        return value * _POW10[precision]
    raise DecodeError(f"expected a number, got {type(value).__name__}")


def _decimal_to_fixed(dec: Decimal, precision: int, text: str) -> int:
    if not dec.is_finite():
        raise DecodeError(f"not a finite number: {text!r}")
    scaled = dec.scaleb(precision)
    if scaled != scaled.to_integral_value():
        raise DecodeError(f"{text!r} has more than {precision} decimals")
    if abs(scaled) >= _POW10[_MAX_DIGITS - 1]:
        raise DecodeError("number out of range")
    return int(scaled)


def parse_decimal(value: object) -> Decimal:
    """Exact Decimal of a wire number (text from ``float_hook=str`` or int)."""
    if type(value) is str:
        if len(value) > _MAX_DIGITS:
            raise DecodeError(f"number too long: {value[:40]!r}")
        try:
            dec = Decimal(value)
        except InvalidOperation as exc:
            raise DecodeError(f"not a number: {value!r}") from exc
        if not dec.is_finite():
            raise DecodeError(f"not a finite number: {value!r}")
        return dec
    if type(value) is int:
        if abs(value) >= _POW10[_MAX_DIGITS - 1]:
            raise DecodeError("integer out of range")
        return Decimal(value)
    raise DecodeError(f"expected a number, got {type(value).__name__}")


def parse_int(value: object, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
    """A JSON integer within ``[lo, hi]`` (bools and floats refused)."""
    if type(value) is not int:
        raise DecodeError(f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"integer {value} out of range")
    return value
