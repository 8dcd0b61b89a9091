"""REST exchanges (snapshots, tokens) with venue rules and hostile-input limits.

What the venues need (protocols.md §2.1, §2.4, §3.7, §3.11):

- **Weight budgets**: Binance counts request weight per IP per minute (a
  5000-level depth snapshot costs 250), KuCoin per pool per 30 s. A
  :class:`RestBudget` is a weight token bucket per venue, so a mass resync is
  paced instead of getting the user banned.
- **429 / 418 with ``Retry-After``**: the budget is blocked until the venue
  allows requests again; a 418 (IP ban after ignoring 429s) is honoured the
  same way. Nothing is sent while blocked.
- **Limits**: the body is read in chunks and refused past ``max_body_bytes``;
  every request runs under ``timeout_s``.
- **Policy**: TLS verification on for ``https://``; no proxy is read from the
  environment (``trust_env=False``).

Errors surface as :class:`~gapless.errors.TransportError` (network, timeout) or
:class:`RestTooLarge` (a :class:`~gapless.errors.ProtocolError`); HTTP error
statuses are returned, not raised, so the caller decides (e.g. refetch later).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp

from gapless.errors import ConfigError, ProtocolError, TransportError

__all__ = ["RestBudget", "RestClient", "RestOptions", "RestResponse", "RestTooLarge"]


class RestTooLarge(ProtocolError):
    """A REST body exceeded ``max_body_bytes`` (``limit``); reading stopped after
    ``read`` bytes (the chunk that crossed the limit), so nothing larger was held."""

    def __init__(self, message: str, *, limit: int = 0, read: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.read = read


@dataclass(frozen=True, slots=True)
class RestOptions:
    """``timeout_s`` bounds each request; ``max_body_bytes`` (16 MiB: a 5000-level
    Binance snapshot is about 0.3 MB) bounds each answer's body after
    ``Content-Encoding`` decompression (aiohttp inflates in bounded steps, so a
    gzip bomb is cut off after about one step past the limit). A bigger body
    raises :class:`RestTooLarge`; the supervisor reports it as a ``BadFrame``
    event and the adapter retries the call later. A feed takes it from
    ``TransportOptions.max_rest_body_bytes``."""

    timeout_s: float = 10.0
    max_body_bytes: int = 16 * 1024 * 1024
    ssl_context: ssl.SSLContext | None = None
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class RestResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float

    @property
    def retry_after_s(self) -> float | None:
        """``Retry-After`` (s, Binance §3.11), else KuCoin's ``gw-ratelimit-reset`` (ms, §2.4)."""
        for name, scale in (("Retry-After", 1.0), ("gw-ratelimit-reset", 1e-3)):
            raw = self.headers.get(name)
            if raw is None:
                continue
            try:
                return max(0.0, min(float(raw) * scale, 86_400.0))
            except ValueError:
                continue
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class RestClient:
    """One aiohttp session; use as ``async with RestClient(...) as rest``."""

    def __init__(self, options: RestOptions | None = None) -> None:
        self.options = options or RestOptions()
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def __aenter__(self) -> RestClient:
        connector = aiohttp.TCPConnector(ssl=self.options.ssl_context or True, limit=16)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> RestResponse:
        if self._session is None:
            raise ConfigError("RestClient used outside 'async with'")
        if not (url.startswith("http://") or url.startswith("https://")):
            raise ConfigError(f"unsupported REST URL: {url!r}")
        opts = self.options
        started = time.monotonic()
        self.requests += 1
        try:
            async with asyncio.timeout(opts.timeout_s):
                async with self._session.request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    data=body,
                    proxy=opts.proxy,
                    allow_redirects=False,
                ) as resp:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > opts.max_body_bytes:
                            raise RestTooLarge(
                                f"{method} {url}: body larger than {opts.max_body_bytes} bytes",
                                limit=opts.max_body_bytes,
                                read=size,
                            )
                        chunks.append(chunk)
                    result = RestResponse(
                        status=resp.status,
                        headers={k: v for k, v in resp.headers.items()},
                        body=b"".join(chunks),
                        elapsed_s=time.monotonic() - started,
                    )
        except TimeoutError:
            raise TransportError(f"{method} {url}: no answer within {opts.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        return result


@dataclass(slots=True)
class RestBudget:
    """Request-weight token bucket with ban tracking (all times: loop clock seconds)."""

    capacity: float
    per_second: float
    tokens: float = field(init=False)
    stamp: float = 0.0
    blocked_until: float = 0.0
    bans: int = 0

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.per_second <= 0:
            raise ValueError("budget needs a positive capacity and rate")
        self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
            self.stamp = now

    def wait_time(self, weight: float, now: float) -> float:
        """Seconds until a request of ``weight`` may be sent (0: now)."""
        self._refill(now)
        blocked = max(0.0, self.blocked_until - now)
        short = max(0.0, min(weight, self.capacity) - self.tokens) / self.per_second
        return max(blocked, short)

    def take(self, weight: float, now: float) -> None:
        self._refill(now)
        self.tokens -= min(weight, self.capacity)

    def on_response(self, status: int, retry_after_s: float | None, now: float) -> None:
        """429 / 418: stop everything until the venue says so. Without a hint: 10 s
        after a 429 (KuCoin's overload form has no headers), 60 s after a 418."""
        if status in (429, 418):
            self.bans += status == 418
            default = 60.0 if status == 418 else 10.0
            wait = retry_after_s if retry_after_s is not None else default
            self.blocked_until = max(self.blocked_until, now + wait)
            self.tokens = min(self.tokens, 0.0)
