"""Time limits and a bound on open connections for the stand-in's HTTP server.

aiohttp has one timer, its keep-alive timeout, alike for an idle connection
and a header still arriving (so a short idle limit is a short header limit);
a body may take forever, and aiohttp holds as many connections as clients
open. Production HTTP servers bound all three (nginx's
`client_header_timeout`, `client_body_timeout` and `worker_connections`;
Go's `ReadHeaderTimeout`; libevent's `evhttp_set_timeout`, under TF
Serving). The guard wraps each connection's protocol, gives it a deadline
for whatever it is waiting on, and closes it when the deadline passes; at
the connection bound a new client displaces the connection that has waited
longest for a request, so slow clients cannot lock others out. aiohttp's own
timer is set past every guard deadline (server.py), so the guard's are the limits.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    header_seconds: float = 10.0  # from connecting, or from the first byte after an idle spell, to a full header
    body_seconds: float = 30.0  # to receive the whole request body
    idle_seconds: float = 30.0  # a kept-alive connection's wait for its next request, and for a reader to drain
    max_connections: int = 256
    max_body_bytes: int = 256 * 1024 * 1024  # large candidate lists fit; TF Serving sets no limit of its own

    def __post_init__(self):
        for name in ("header_seconds", "body_seconds", "idle_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ConnectionLimits.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_connections", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConnectionLimits.{name} must be at least 1, got {getattr(self, name)}")


class Connection:
    """One client connection: what it waits for ("header", "body", "busy" in a model call, "writing" a response
    its client has yet to read, "idle" between requests) and until when."""

    def __init__(self, limits: ConnectionLimits, transport: asyncio.BaseTransport):
        self._limits = limits
        self.transport = transport
        self._enter("header", self._limits.header_seconds)

    def _enter(self, state: str, seconds: float | None):
        self.state = state
        self.since = time.monotonic()
        self.deadline = None if seconds is None else self.since + seconds

    @property
    def waiting_for_request(self) -> bool:
        return self.state in ("header", "idle")

    def data_arrived(self):
        if self.state == "idle":  # the next request begins: its header now has the header limit
            self._enter("header", self._limits.header_seconds)

    def reading_body(self):
        self._enter("body", self._limits.body_seconds)

    def busy(self):
        self._enter("busy", None)  # a model call takes as long as it takes

    def writing(self):
        self._enter("writing", self._limits.idle_seconds)  # a reader has the idle limit to drain the response

    def answered(self):
        """The response has been handed to the transport: the connection now waits for its next request."""
        self._enter("idle", self._limits.idle_seconds)


class ConnectionGuard:
    """Tracks every open connection of one server; all methods run on the server's event loop."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self._open: dict[asyncio.BaseTransport, Connection] = {}
        self.timed_out = self.displaced = self.refused = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def connection(self, transport) -> Connection | None:
        return self._open.get(transport)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner())

    def admit(self, transport: asyncio.Transport) -> Connection | None:
        """A new connection's record, None if it must be turned away (every open one is in a request)."""
        if len(self._open) >= self.limits.max_connections:
            waiting = [c for c in self._open.values() if c.waiting_for_request]
            if not waiting:
                self.refused += 1
                _LOG.warning("refused a connection: all %d are busy with requests", len(self._open))
                return None
            oldest = min(waiting, key=lambda c: c.since)
            self.displaced += 1
            self._close(oldest)
        connection = Connection(self.limits, transport)
        self._open[transport] = connection
        return connection

    def _close(self, connection: Connection):
        self._open.pop(connection.transport, None)
        connection.transport.abort()

    def forget(self, transport):
        """Drops a connection that closed (by either side)."""
        self._open.pop(transport, None)

    def close_expired(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        expired = [c for c in self._open.values() if c.deadline is not None and c.deadline <= now]
        for connection in expired:
            self._close(connection)
        self.timed_out += len(expired)
        return len(expired)

    async def sweep(self):
        """Closes connections past their deadline, a few times per shortest limit, until cancelled."""
        period = min(0.5, self.limits.header_seconds / 4, self.limits.body_seconds / 4, self.limits.idle_seconds / 4)
        while True:
            await asyncio.sleep(period)
            if self.close_expired():
                _LOG.info("closed connections that ran out of time (%d so far)", self.timed_out)


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard told of its arrival, data and end."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol):
        self._guard = guard
        self._inner = inner
        self._connection: Connection | None = None
        self._transport = None

    def connection_made(self, transport):
        self._transport = transport
        self._connection = self._guard.admit(transport)
        if self._connection is None:
            transport.abort()
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes):
        if self._connection is not None:
            self._connection.data_arrived()
            self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received() if self._connection is not None else None

    def connection_lost(self, exc):
        self._guard.forget(self._transport)
        if self._connection is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self):
        self._inner.pause_writing()

    def resume_writing(self):
        self._inner.resume_writing()
