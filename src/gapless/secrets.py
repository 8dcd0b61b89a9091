"""Secrets that never leave memory (design.md §1.6).

:class:`Secret` wraps a string whose ``repr``/``str``/``format`` never show
it; code that needs the value calls :meth:`Secret.reveal` at the point of use
(signing). :class:`Credentials` loads a venue's API key/secret (and KuCoin
passphrase) from environment variables::

    GAPLESS_<VENUE>_API_KEY, GAPLESS_<VENUE>_API_SECRET, GAPLESS_<VENUE>_PASSPHRASE

or from a TOML credentials file (``GAPLESS_CREDENTIALS_FILE``, or a path
given explicitly) that only its owner can read (mode ``0600`` or stricter;
anything readable by group or others is refused, like ssh does)::

    [kraken]
    api_key = "..."
    api_secret = "..."

    [kucoin]
    api_key = "..."
    api_secret = "..."
    passphrase = "..."

Environment variables win over the file. Public market data needs no
credentials; private channels use them. Anything that writes text a user
might share (logs, captures, errors) registers the revealed values for
redaction; errors about credentials name the variable or file and field,
never the value.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gapless.errors import ConfigError

__all__ = ["CREDENTIALS_FILE_ENV", "Credentials", "Secret", "load_credentials_file"]

CREDENTIALS_FILE_ENV = "GAPLESS_CREDENTIALS_FILE"
_MAX_FILE_BYTES = 64 * 1024


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

    @classmethod
    def load(
        cls,
        venue: str,
        *,
        environ: Mapping[str, str] | None = None,
        path: str | Path | None = None,
    ) -> Credentials | None:
        """From the environment, else from the credentials file (``path`` or
        ``$GAPLESS_CREDENTIALS_FILE``); None when neither has the venue."""
        found = cls.from_env(venue, environ)
        if found is not None:
            return found
        env = os.environ if environ is None else environ
        file = path if path is not None else env.get(CREDENTIALS_FILE_ENV)
        if not file:
            return None
        return load_credentials_file(file).get(venue)

    def secrets(self) -> list[str]:
        """The raw values, for redaction filters only."""
        out = [self.api_key.reveal(), self.api_secret.reveal()]
        if self.passphrase is not None:
            out.append(self.passphrase.reveal())
        return out


def load_credentials_file(path: str | Path) -> dict[str, Credentials]:
    """Every venue table of a TOML credentials file (see the module docstring).

    Refused with :class:`ConfigError` (the message names the file and field,
    never a value): a file readable or writable by group or others, a
    symlink, a file over 64 KiB, invalid TOML, unknown fields, or a venue
    with a key but no secret."""
    p = Path(path).expanduser()
    try:
        st = p.lstat()
    except FileNotFoundError:
        raise ConfigError(f"credentials file {p} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"credentials file {p}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"credentials file {p} must be a regular file (not a link)")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"credentials file {p} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {p}"
        )
    if st.st_size > _MAX_FILE_BYTES:
        raise ConfigError(f"credentials file {p} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # the parser's message may quote the offending line: keep only its position
        where = getattr(exc, "lineno", None)
        at = f" near line {where}" if where else ""
        raise ConfigError(f"credentials file {p} is not valid TOML{at}") from None
    out: dict[str, Credentials] = {}
    for venue, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"credentials file {p}: [{venue}] must be a table")
        unknown = set(table) - {"api_key", "api_secret", "passphrase"}
        if unknown:
            raise ConfigError(
                f"credentials file {p}: [{venue}] has unknown fields {sorted(unknown)}"
            )
        for name, value in table.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"credentials file {p}: [{venue}] {name} must be a non-empty string"
                )
        if "api_key" not in table or "api_secret" not in table:
            raise ConfigError(f"credentials file {p}: [{venue}] needs api_key and api_secret")
        phrase = table.get("passphrase")
        out[venue] = Credentials(
            venue,
            Secret(table["api_key"]),
            Secret(table["api_secret"]),
            Secret(phrase) if phrase else None,
        )
    return out
