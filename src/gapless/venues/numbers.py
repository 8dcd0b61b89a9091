"""Exact number handling shared by venue decoders (pure).

Venue frames are decoded with ``msgspec.json.Decoder(float_hook=str)``, so a
JSON number with a fraction or exponent arrives as its exact wire text
(``'0.50930100'``) and an integer as ``int``. Nothing goes through a float.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from gapless.errors import DecodeError

__all__ = [
    "CACHE_LIMIT",
    "PriceCache",
    "fixed_plain",
    "fixed_plain_cached",
    "parse_decimal",
    "parse_fixed",
    "parse_fixed_cached",
    "parse_int",
]

_POW10: list[int] = [10**i for i in range(40)]
_MAX_DIGITS = 36  # hostile-input bound: no real price or quantity is longer


def parse_fixed(value: object, precision: int, signed: bool = True) -> int:
    """Scaled integer of a wire number at ``precision`` decimals, exactly.

    ``parse_fixed('62807.1', 1) == 628071``; ``parse_fixed('0.00000000', 8) == 0``;
    ``parse_fixed(5, 2) == 500``. Extra fractional digits are accepted only if
    they are zeros (otherwise the value is not on the venue's grid and that is
    a protocol violation). Exponent forms (``1e-08``) go through Decimal.
    Negative values are allowed (ticker ``change``) unless ``signed`` is False
    (book prices and quantities): then any minus sign, even ``-0``, is refused.

    Hot path: a number printed with exactly ``precision`` decimals (what venues
    send) is its digits without the dot (:func:`fixed_plain`, which never sees a
    sign, so the ``signed`` check costs nothing there)."""
    fixed = fixed_plain(value, precision)
    if fixed is not None:
        return fixed
    if not signed and (
        (type(value) is str and value[:1] == "-") or (type(value) is int and value < 0)
    ):
        raise DecodeError(f"negative number: {str(value)[:40]!r}")
    return _parse_fixed(value, precision)


def parse_fixed_cached(
    cache: dict[str, int], value: object, precision: int, signed: bool = True
) -> int:
    """:func:`parse_fixed` through ``cache`` (text -> scaled int at ``precision``;
    one cache per precision). Book prices repeat (a few hundred distinct prices
    near the top of a book), so they are parsed once. The cache is cleared when
    it reaches :data:`CACHE_LIMIT` entries, which bounds its memory."""
    if type(value) is str:
        hit = cache.get(value)
        if hit is not None:
            return hit
        fixed = parse_fixed(value, precision, signed)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[value] = fixed
        return fixed
    return parse_fixed(value, precision, signed)


CACHE_LIMIT = 4096


def fixed_plain(value: object, precision: int) -> int | None:
    """Scaled integer of a plain decimal string with at most ``precision`` decimals
    (``fixed_plain('0.00240000', 8) == 240000``; ``fixed_plain('0.1', 6) == 100000``,
    KuCoin drops trailing zeros; ``fixed_plain('5', 2) == 500``), else None: anything
    else (more decimals, signs, exponents, JSON numbers, over 36 characters) is for
    the general, validating decoder. The hot path of venues that send numbers as text."""
    if type(value) is str and len(value) <= _MAX_DIGITS:
        dot = value.find(".")
        if dot < 0:
            if value.isdigit() and value.isascii():
                return int(value) * _POW10[precision]
        elif 0 < dot < len(value) - 1:
            n = len(value) - dot - 1
            if n <= precision:
                digits = value.replace(".", "", 1)
                if digits.isdigit() and digits.isascii():
                    return int(digits) * _POW10[precision - n]
    return None


def fixed_plain_cached(cache: dict[str, int], value: object, precision: int) -> int | None:
    """:func:`fixed_plain` through ``cache`` (see :func:`parse_fixed_cached`)."""
    if type(value) is not str:
        return None
    hit = cache.get(value)
    if hit is not None:
        return hit
    fixed = fixed_plain(value, precision)
    if fixed is not None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[value] = fixed
    return fixed


class PriceCache:
    """The parsed-price caches of one adapter, one per price precision (book prices
    repeat: a few hundred distinct prices near the top of a book)."""

    __slots__ = ("_by_precision",)

    def __init__(self) -> None:
        self._by_precision: dict[int, dict[str, int]] = {}

    def at(self, precision: int) -> dict[str, int]:
        cache = self._by_precision.get(precision)
        if cache is None:
            cache = self._by_precision[precision] = {}
        return cache


def _parse_fixed(value: object, precision: int) -> int:
    if type(value) is str:
        text: str = value
        if len(text) > _MAX_DIGITS:
            raise DecodeError(f"number too long: {text[:40]!r}")
        dot = text.find(".")
        if dot >= 0 and "e" not in text and "E" not in text:
            digits = text[1:] if text[:1] == "-" else text
            if not (digits.isascii() and digits.replace(".", "", 1).isdigit()):
                raise DecodeError(f"not a plain decimal number: {text!r}")
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
    # Integer arithmetic on (sign, digits, exponent), never the decimal context:
    # ``Decimal.scaleb`` rounds under the default context, so a huge exponent
    # raised ``decimal.Overflow`` (not a DecodeError) and a tiny one such as
    # ``1e-999999999`` underflowed to 0 and was accepted as a delete.
    if not dec.is_finite():
        raise DecodeError(f"not a finite number: {text!r}")
    sign, digits, exp = dec.as_tuple()
    assert isinstance(exp, int)  # finite
    coeff = int("".join(map(str, digits)))  # at most _MAX_DIGITS digits (text length)
    if coeff == 0:
        return 0
    shift = exp + precision
    if shift >= 0:
        if shift >= _MAX_DIGITS:
            raise DecodeError("number out of range")
        scaled = coeff * _POW10[shift]
    else:
        if -shift > len(digits):
            raise DecodeError(f"{text!r} has more than {precision} decimals")
        scaled, rest = divmod(coeff, _POW10[-shift])
        if rest:
            raise DecodeError(f"{text!r} has more than {precision} decimals")
    if scaled >= _POW10[_MAX_DIGITS - 1]:
        raise DecodeError("number out of range")
    return -scaled if sign else scaled


def parse_decimal(value: object, *, signed: bool = True) -> Decimal:
    """Exact Decimal of a wire number (text from ``float_hook=str`` or int);
    ``signed=False`` (trade prices and quantities) refuses any minus sign, even ``-0``."""
    if type(value) is str:
        if len(value) > _MAX_DIGITS:
            raise DecodeError(f"number too long: {value[:40]!r}")
        try:
            dec = Decimal(value)
        except InvalidOperation as exc:
            raise DecodeError(f"not a number: {value!r}") from exc
        if not dec.is_finite():
            raise DecodeError(f"not a finite number: {value!r}")
        # a short text can carry a huge exponent ("1E+999999999"): arithmetic on it
        # would raise decimal.Overflow in a caller; keep what 36 plain digits can say
        exp = dec.as_tuple().exponent
        assert isinstance(exp, int)  # finite
        if exp < -_MAX_DIGITS or dec.adjusted() >= _MAX_DIGITS:
            raise DecodeError(f"number out of range: {value!r}")
        if not signed and dec.is_signed():
            raise DecodeError(f"negative number: {value!r}")
        return dec
    if type(value) is int:
        if abs(value) >= _POW10[_MAX_DIGITS - 1]:
            raise DecodeError("integer out of range")
        if not signed and value < 0:
            raise DecodeError(f"negative number: {value}")
        return Decimal(value)
    raise DecodeError(f"expected a number, got {type(value).__name__}")


def parse_int(value: object, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
    """A JSON integer within ``[lo, hi]`` (bools and floats refused)."""
    if type(value) is not int:
        raise DecodeError(f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"integer {value} out of range")
    return value
