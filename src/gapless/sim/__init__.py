"""gapless.sim: a local Kraken Spot v2 exchange with a seeded market, faults and ground truth.

Users test their bots against it, ``gapless demo`` embeds it, and the
integration tests run the client against it over real loopback sockets. It is
an independent implementation of the venue (protocols.md §1, §5 items 1-3):
it imports only the standard library and ``websockets``, never the client's
``venues``/``runtime``/``book`` code, so a protocol misreading shared with
the client cannot hide.

::

    from gapless.sim import KrakenSim, SimConfig, Fault, Scenario

    async with KrakenSim(SimConfig(seed=7, symbols=("BTC/USD", "ETH/USD"))) as sim:
        sim.url                                   # ws://127.0.0.1:<port>/v2
        sim.auth_url, sim.rest_url                # /v2-auth (private), http:// (REST)
        sim.schedule(Scenario([Fault("abort", 5.0)]))
        await sim.inject(Fault("close", params={"code": 1001}))
        await sim.quiesce()                       # freeze the market, write final books
        sim.final_books(), sim.truth, sim.stats
        sim.final_orders(), sim.final_balances()  # the private side (demo account)

Transport faults (latency, bandwidth, blackhole, reset, slicer, limit-data)
come from :class:`FaultProxy` (:mod:`gapless.sim.proxy`) placed between a
client and any simulator.

See :mod:`gapless.sim.kraken` for the wire behaviour, the ordering guarantee
and the ground-truth record shapes, and :mod:`gapless.sim.faults` for fault
kinds, scenario files and chaos generation.
"""

from gapless.sim.accounts import (
    DEMO_KRAKEN_ACCOUNT,
    AccountSpec,
    MatchingEngine,
    OrderRejected,
)
from gapless.sim.binance import (
    BINANCE_FAULT_KINDS,
    BinancePair,
    BinanceSim,
    BinanceSimConfig,
    BinanceSimStats,
)
from gapless.sim.binance_wire import DEFAULT_BINANCE_PAIRS
from gapless.sim.checksum import checksum_scaled, checksum_text
from gapless.sim.faults import (
    CONSUMER_FAULT_KINDS,
    DEFAULT_CHAOS_KINDS,
    FAULT_KINDS,
    KRAKEN_PRIVATE_FAULT_KINDS,
    TRANSPORT_FAULT_KINDS,
    Fault,
    Scenario,
)
from gapless.sim.kraken import BOOK_DEPTHS, KRAKEN_FAULT_KINDS, KrakenSim, SimConfig, SimStats
from gapless.sim.kraken_private import kraken_signature
from gapless.sim.kucoin import (
    KUCOIN_FAULT_KINDS,
    KUCOIN_PAIRS,
    KucoinSim,
    KucoinSimConfig,
    KucoinSimStats,
)
from gapless.sim.market import DEFAULT_PAIRS, PairSpec
from gapless.sim.proxy import FaultProxy, ProxyStats, Toxics

__all__ = [
    "BINANCE_FAULT_KINDS",
    "BOOK_DEPTHS",
    "CONSUMER_FAULT_KINDS",
    "DEFAULT_BINANCE_PAIRS",
    "DEFAULT_CHAOS_KINDS",
    "DEFAULT_PAIRS",
    "DEMO_KRAKEN_ACCOUNT",
    "FAULT_KINDS",
    "KRAKEN_FAULT_KINDS",
    "KRAKEN_PRIVATE_FAULT_KINDS",
    "KUCOIN_FAULT_KINDS",
    "KUCOIN_PAIRS",
    "TRANSPORT_FAULT_KINDS",
    "AccountSpec",
    "BinancePair",
    "BinanceSim",
    "BinanceSimConfig",
    "BinanceSimStats",
    "Fault",
    "FaultProxy",
    "KrakenSim",
    "KucoinSim",
    "KucoinSimConfig",
    "KucoinSimStats",
    "MatchingEngine",
    "OrderRejected",
    "PairSpec",
    "ProxyStats",
    "Scenario",
    "SimConfig",
    "SimStats",
    "Toxics",
    "checksum_scaled",
    "checksum_text",
    "kraken_signature",
]
