"""A client for TF Serving's REST API (port 8501), on `requests`.

Retries (connection failures and HTTP 503, with exponential backoff) come from
urllib3's `Retry`, the policy `requests` itself is built on; a read timeout is
not retried, because a slow server only gets slower when asked again.

    client = RestClient("http://localhost:8501", "synthetic_funnel")
    client.rank({"user_id": "u1", ...}, [{"item_id": "i7", ...}, ...], sort_by="ctcvr")
"""
from __future__ import annotations

import base64
from typing import Mapping, Sequence

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from serving.clients.errors import ServingClientError
from serving.clients.examples import RankedCandidate, coerce_floats, encode_example, rank


class RestClient:
    """One model on one TF Serving (or stand-in) REST endpoint; `version` or `label` pin a version."""

    def __init__(self, url: str, model_name: str, version: int | None = None, label: str | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff_seconds: float = 0.1,
                 column_types: Mapping[str, str] | None = None):
        if version is not None and label is not None:
            raise ValueError("pin a version or a label, not both")
        self.model_url = f"{url.rstrip('/')}/v1/models/{model_name}"
        if version is not None:
            self.model_url += f"/versions/{version}"
        elif label is not None:
            self.model_url += f"/labels/{label}"
        self.timeout = timeout
        self.column_types = column_types
        retry = Retry(total=retries, connect=retries, read=0, status=retries, status_forcelist=(503,),
                      allowed_methods=None, backoff_factor=backoff_seconds, raise_on_status=False)
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise ServingClientError("unreachable", str(err), url) from err
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:500] or response.reason}
        if response.status_code != 200:
            raise ServingClientError(response.status_code, payload.get("error", str(payload)), url)
        return payload

    def status(self) -> list[dict]:
        """Every version's `{version, state, status}`, as TF Serving's model status API reports it."""
        return self._call("GET", self.model_url)["model_version_status"]

    def metadata(self) -> dict:
        """The model's signature defs (`metadata.signature_def.signature_def`)."""
        return self._call("GET", f"{self.model_url}/metadata")

    def predict(self, instances: list | None = None, inputs=None, signature_name: str | None = None):
        """Row form (`instances` → `predictions`) or columnar form (`inputs` → `outputs`); returns that value."""
        if (instances is None) == (inputs is None):
            raise ValueError("pass either instances (row form) or inputs (columnar form)")
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        payload = self._call("POST", f"{self.model_url}:predict", body)
        return payload["predictions"] if instances is not None else payload["outputs"]

    def score_examples(self, examples: Sequence[bytes], signature_name: str | None = None) -> dict[str, np.ndarray]:
        """Serialized tf.Examples through `serving_default` (columnar, base64): output name → scores."""
        encoded = [{"b64": base64.b64encode(example).decode("ascii")} for example in examples]
        outputs = self.predict(inputs=encoded, signature_name=signature_name)
        return {name: np.asarray(values) for name, values in outputs.items()}

    def classify(self, examples: Sequence[Mapping], signature_name: str, context: Mapping | None = None
                 ) -> list[list[tuple[str, float]]]:
        """Per example, its `(class label, score)` pairs."""
        results = self._call("POST", f"{self.model_url}:classify",
                             self._examples_body(examples, signature_name, context))["results"]
        return [[(label, score) for label, score in row] for row in results]

    def regress(self, examples: Sequence[Mapping], signature_name: str, context: Mapping | None = None
                ) -> list[float]:
        return self._call("POST", f"{self.model_url}:regress",
                          self._examples_body(examples, signature_name, context))["results"]

    def _examples_body(self, examples, signature_name, context) -> dict:
        body = {"signature_name": signature_name,
                "examples": [coerce_floats(example, self.column_types) for example in examples]}
        if context:
            body["context"] = coerce_floats(context, self.column_types)
        return body

    def rank(self, context: Mapping, candidates: Sequence[Mapping], sort_by: str) -> list[RankedCandidate]:
        """Scores every candidate merged over `context` in one request; best `sort_by` score first."""
        return rank(self.score_examples, context, candidates, sort_by, self.column_types)

    def encode(self, features: Mapping) -> bytes:
        return encode_example(features, self.column_types)

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
