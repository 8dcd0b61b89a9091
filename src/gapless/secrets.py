"""Secrets that never leave memory (design.md §1.6).

:class:`Secret` wraps a string whose ``repr``/``str``/``format`` never show
it; code that needs the value calls :meth:`Secret.reveal` at the point of use
(signing). :class:`Credentials` loads a venue's API key/secret (and KuCoin
passphrase) from environment variables::

    GAPLESS_<VENUE>_API_KEY, GAPLESS_<VENUE>_API_SECRET, GAPLESS_<VENUE>_PASSPHRASE

Public market data needs no credentials; private channels (a later release)
use them. Anything that writes text a user might share (logs, captures,
errors) registers the revealed values for redaction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gapless.errors import ConfigError

__all__ = ["Credentials", "Secret"]


class Secret:
    """A string that refuses to be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("secrets cannot be pickled")


@dataclass(frozen=True, slots=True)
class Credentials:
    venue: str
    api_key: Secret
    api_secret: Secret
    passphrase: Secret | None = None

    @classmethod
    def from_env(cls, venue: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """Credentials from ``GAPLESS_<VENUE>_*``; None when no key is set."""
        env = os.environ if environ is None else environ
        prefix = f"GAPLESS_{venue.upper()}_"
        key = env.get(prefix + "API_KEY")
        secret = env.get(prefix + "API_SECRET")
        if not key and not secret:
            return None
        if not key or not secret:
            raise ConfigError(f"{prefix}API_KEY and {prefix}API_SECRET must both be set")
        phrase = env.get(prefix + "PASSPHRASE")
        return cls(venue, Secret(key), Secret(secret), Secret(phrase) if phrase else None)

    def secrets(self) -> list[str]:
        """The raw values, for redaction filters only."""
        out = [self.api_key.reveal(), self.api_secret.reveal()]
        if self.passphrase is not None:
            out.append(self.passphrase.reveal())
        return out
