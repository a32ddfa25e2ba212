"""The local stand-in for TF Serving: the same REST and gRPC APIs over a model base path.

For development and tests only. Production is TensorFlow Serving (the
`tensorflow/serving` image, see `serving/deploy/`): it batches requests across
clients, runs the graph in C++ without Python, and exports Prometheus
metrics. This server loads the same SavedModels, answers the same requests
with the same errors, and picks up new versions by polling, so clients and
exports can be tested without it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from tensorflow_serving.config import model_server_config_pb2

from serving.standin import proto_api
from serving.standin.connections import ConnectionGuard, ConnectionLimits
from serving.standin.grpc_service import grpc_server
from serving.standin.registry import ModelRegistry
from serving.standin.rest import rest_app

_LOG = logging.getLogger(__name__)
_AIOHTTP_KEEPALIVE_SECONDS = 24 * 3600.0


class StandInServer:
    """REST and gRPC servers over one registry; `start()` returns once the first versions are loaded."""

    def __init__(self, server_config: model_server_config_pb2.ModelServerConfig, host: str = "127.0.0.1",
                 rest_port: int = 8501, grpc_port: int = 8500, max_batch_size: int = 1024,
                 poll_seconds: float = 2.0, workers: int = 8, limits: ConnectionLimits = ConnectionLimits()):
        self.registry = ModelRegistry(server_config, max_batch_size, warm_up=proto_api.warm_up)
        self.host = host
        self.rest_port, self.grpc_port = rest_port, grpc_port
        self._poll_seconds = poll_seconds
        self._workers = workers
        self.connections = ConnectionGuard(limits)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rest")
        self._grpc = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rest_thread: threading.Thread | None = None

    def start(self) -> "StandInServer":
        self.registry.refresh()
        self._grpc, self.grpc_port = grpc_server(self.registry, self.host, self.grpc_port, self._workers)
        ready, failure = threading.Event(), []
        self._rest_thread = threading.Thread(target=self._run_rest, args=(ready, failure), name="rest", daemon=True)
        self._rest_thread.start()
        ready.wait()
        if failure:
            self._grpc.stop(0)
            raise failure[0]
        self.registry.start_polling(self._poll_seconds)
        _LOG.info("serving %s: REST on http://%s:%d, gRPC on %s:%d", ", ".join(self.registry.model_names),
                  self.host, self.rest_port, self.host, self.grpc_port)
        return self

    def _run_rest(self, ready: threading.Event, failure: list):
        self._loop = asyncio.new_event_loop()
        # The guard alone closes idle connections (its idle deadline starts once a response is written and also
        # decides which connection a new client displaces); aiohttp's own keep-alive timer cannot be switched off
        # (0 closes a kept-alive connection at once), so it is set past any deadline the guard enforces.
        runner = web.AppRunner(rest_app(self.registry, self._pool, self.connections), access_log=None,
                               keepalive_timeout=_AIOHTTP_KEEPALIVE_SECONDS)
        try:
            self._loop.run_until_complete(runner.setup())
            # The guard wraps aiohttp's protocol, so the server is created here rather than by a TCPSite.
            server = self._loop.run_until_complete(self._loop.create_server(
                self.connections.protocol_factory(runner.server), self.host, self.rest_port))
            self.rest_port = server.sockets[0].getsockname()[1]  # the port bound when 0 was asked for
        except OSError as err:
            failure.append(OSError(f"cannot bind the REST server to {self.host}:{self.rest_port}: {err}"))
            ready.set()
            return
        sweeper = self._loop.create_task(self.connections.sweep())
        ready.set()
        self._loop.run_forever()
        sweeper.cancel()
        server.close()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def stop(self):
        self.registry.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._rest_thread.join()
        self._pool.shutdown(wait=True)

    def wait(self):
        """Blocks until interrupted (Ctrl-C), then shuts down."""
        try:
            self._rest_thread.join()
        except KeyboardInterrupt:
            _LOG.info("stopping")
        finally:
            self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
