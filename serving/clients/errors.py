"""The one error type both clients raise, so callers handle REST and gRPC failures alike."""
from __future__ import annotations


class ServingClientError(RuntimeError):
    """A request the model server refused or could not be reached for.

    `status` is the HTTP status (REST) or the gRPC status code name (gRPC);
    `message` is the server's own explanation.
    """

    def __init__(self, status, message: str, target: str):
        super().__init__(f"{target}: {status}: {message}")
        self.status = status
        self.message = message
        self.target = target
