"""Clients for TensorFlow Serving (and the local stand-in): REST and gRPC, with `rank()` for one request."""
from serving.clients.errors import ServingClientError
from serving.clients.examples import RankedCandidate, column_types, encode_example
from serving.clients.grpc_client import GrpcClient
from serving.clients.rest_client import RestClient

__all__ = ["GrpcClient", "RankedCandidate", "RestClient", "ServingClientError", "column_types", "encode_example"]
