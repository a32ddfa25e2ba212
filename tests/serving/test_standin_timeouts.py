"""Slow or stalled clients cannot hold the stand-in's REST server (issue 21).

Each test opens at most a dozen loopback connections that stall on purpose,
checks that the server closes them once their time limit passes (and not
long before), and that other clients are answered meanwhile. Limits are a
fraction of a second so the whole file runs in seconds; every socket is
closed by the test whatever happens.
"""
import contextlib
import socket
import time

import pytest

from serving.standin.connections import ConnectionGuard, ConnectionLimits
from tests.serving.conftest import TINY_MODEL, tiny_stand_in

STATUS_REQUEST = f"GET /v1/models/{TINY_MODEL} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
PARTIAL_HEADER = f"GET /v1/models/{TINY_MODEL} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
SHORT = ConnectionLimits(header_seconds=0.6, body_seconds=0.6, idle_seconds=2.0, max_connections=16)


@pytest.fixture(scope="module")
def short_limits_server(tiny_model_dir):
    with tiny_stand_in(tiny_model_dir, SHORT) as server:
        yield server


@contextlib.contextmanager
def connections(server, count: int):
    opened = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(("127.0.0.1", server.rest_port), timeout=5))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def seconds_until_closed(sock: socket.socket, started: float, limit: float = 5.0) -> float:
    """How long after `started` the server closed `sock` (reading whatever it sent first)."""
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"the server still held the connection after {limit} s")
    return time.monotonic() - started


def answered(server) -> str:
    """The status line of a complete request on a fresh connection."""
    with connections(server, 1) as (sock,):
        sock.sendall(STATUS_REQUEST)
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def test_partial_headers_are_cut_off_at_the_header_limit_while_others_are_answered(short_limits_server):
    with connections(short_limits_server, 10) as stalled:
        started = time.monotonic()
        for sock in stalled:
            sock.sendall(PARTIAL_HEADER)
        assert answered(short_limits_server) == "HTTP/1.1 200 OK"
        trickle = stalled[0]  # one byte now and then must not buy more time: the limit is for the whole header
        for _ in range(3):
            time.sleep(0.15)
            trickle.sendall(b"X")
        closed_after = [seconds_until_closed(sock, started) for sock in stalled]
    # Well before the idle limit (aiohttp on its own would leave a partial header to its keep-alive timer).
    assert all(SHORT.header_seconds - 0.1 <= t <= SHORT.header_seconds + 1.0 for t in closed_after), closed_after
    assert short_limits_server.connections.open_connections <= 1
    assert answered(short_limits_server) == "HTTP/1.1 200 OK"


def test_a_stalled_body_is_cut_off_at_the_body_limit(short_limits_server):
    header = (f"POST /v1/models/{TINY_MODEL}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    with connections(short_limits_server, 3) as stalled:
        started = time.monotonic()
        for sock in stalled:
            sock.sendall(header + b'{"instances": [')
        assert answered(short_limits_server) == "HTTP/1.1 200 OK"
        closed_after = [seconds_until_closed(sock, started) for sock in stalled]
    assert all(SHORT.body_seconds - 0.1 <= t <= SHORT.body_seconds + 1.0 for t in closed_after), closed_after


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_limit(short_limits_server):
    with connections(short_limits_server, 1) as (sock,):
        sock.sendall(STATUS_REQUEST)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        closed_after = seconds_until_closed(sock, started)
    assert SHORT.idle_seconds - 0.3 <= closed_after <= SHORT.idle_seconds + 2.0


def test_a_kept_alive_connection_that_starts_a_header_gets_the_header_limit_not_the_idle_one(short_limits_server):
    with connections(short_limits_server, 1) as (sock,):
        sock.sendall(STATUS_REQUEST)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        time.sleep(0.2)
        started = time.monotonic()
        sock.sendall(PARTIAL_HEADER)
        closed_after = seconds_until_closed(sock, started)
    assert SHORT.header_seconds - 0.1 <= closed_after < SHORT.idle_seconds - 0.2


@pytest.mark.parametrize("request_bytes", [STATUS_REQUEST, b"GET /statuspage HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
                         ids=["v1", "outside-v1"])
def test_the_idle_limit_starts_once_the_response_is_written_whatever_the_path(short_limits_server, request_bytes):
    # A 404 page outside /v1/ left its connection on the header deadline of its request (cut after 0.6 s, not 2 s).
    with connections(short_limits_server, 1) as (sock,):
        sock.sendall(request_bytes)
        assert sock.recv(4096).startswith((b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"))
        started = time.monotonic()
        closed_after = seconds_until_closed(sock, started)
    assert SHORT.idle_seconds - 0.3 <= closed_after <= SHORT.idle_seconds + 2.0


@pytest.fixture(scope="module")
def bounded_server(tiny_model_dir):
    limits = ConnectionLimits(header_seconds=20, body_seconds=20, idle_seconds=20, max_connections=4,
                              max_body_bytes=4096)
    with tiny_stand_in(tiny_model_dir, limits) as server:
        yield server


def test_at_the_connection_bound_a_new_client_displaces_the_longest_waiting_one(bounded_server):
    displaced_before = bounded_server.connections.displaced
    with connections(bounded_server, 4) as stalled:
        for sock in stalled:
            sock.sendall(PARTIAL_HEADER)
            time.sleep(0.05)  # so the first one has waited longest
        started = time.monotonic()
        assert answered(bounded_server) == "HTTP/1.1 200 OK"
        assert time.monotonic() - started < 5  # long before any header limit: a stalled client made room
        assert seconds_until_closed(stalled[0], started) < 5
        assert bounded_server.connections.displaced == displaced_before + 1


def test_a_body_over_the_size_limit_is_a_400_not_a_500(bounded_server):
    body = b'{"instances": [' + b"1.0, " * 2000 + b"1.0]}"
    with connections(bounded_server, 1) as (sock,):
        sock.sendall(f"POST /v1/models/{TINY_MODEL}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ") and b"exceeds the stand-in's limit of 4096 bytes" in reply


class _Transport:
    def __init__(self):
        self.aborted = False

    def abort(self):
        self.aborted = True


def test_when_every_connection_is_busy_a_new_one_is_refused_and_deadlines_close_the_expired():
    guard = ConnectionGuard(ConnectionLimits(header_seconds=1, body_seconds=1, idle_seconds=1, max_connections=2))
    first, second, third = _Transport(), _Transport(), _Transport()
    for transport in (first, second):
        guard.admit(transport).busy()
    assert guard.admit(third) is None and guard.refused == 1 and not first.aborted
    guard.connection(first).answered()
    assert guard.close_expired(time.monotonic() + 0.5) == 0
    assert guard.close_expired(time.monotonic() + 1.5) == 1 and first.aborted and not second.aborted
    # A connection still writing its response is not waiting for a request: never displaced, and its reader
    # gets the idle limit to drain it.
    fourth = _Transport()
    guard.admit(fourth).busy()
    guard.connection(second).writing()
    assert guard.admit(third) is None and guard.refused == 2 and not second.aborted
    assert guard.close_expired(time.monotonic() + 1.5) == 1 and second.aborted and not fourth.aborted
    with pytest.raises(ValueError, match="header_seconds must be positive"):
        ConnectionLimits(header_seconds=0)
    with pytest.raises(ValueError, match="max_body_bytes must be at least 1"):
        ConnectionLimits(max_body_bytes=0)
