"""Which versions of which models are loaded: TF Serving's file-system source and version policy.

Each model's base path is polled; a version directory that appears is loaded
(warm-up requests replayed first, as TF Serving does), one that disappears or
falls out of the version policy is unloaded. Requests pick a version by
number, by label (`stable`, `canary`) or, by default, the newest loaded one.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from features.config import ConfigError
from serving.standin.errors import invalid_argument, not_found
from serving.standin.servable import Servable

_LOG = logging.getLogger(__name__)
_State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class VersionStatus:
    state: int
    error: str = ""


@dataclass
class ModelEntry:
    """One model of the server config, its loaded versions and every version's last known state."""

    config: model_server_config_pb2.ModelConfig
    servables: dict[int, Servable] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def wanted(self, on_disk: list[int]) -> list[int]:
        """The versions the model's version policy asks for (TF Serving's default: the latest one)."""
        policy = self.config.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return on_disk
        if kind == "specific":
            return [v for v in on_disk if v in set(policy.specific.versions)]
        return on_disk[-(policy.latest.num_versions or 1):]


def read_model_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parses a TF Serving `--model_config_file` (text `ModelServerConfig`), naming the file on errors."""
    try:
        return text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as err:
        raise ConfigError(f"{path}: not a TF Serving ModelServerConfig text proto: {err}") from None


def single_model_config(name: str, base_path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """What TF Serving's `--model_name N --model_base_path P` means."""
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=str(Path(base_path).resolve()), model_platform="tensorflow")
    return config


def _versions_on_disk(base_path: Path) -> list[int]:
    if not base_path.is_dir():
        return []
    return sorted(int(p.name) for p in base_path.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


class ModelRegistry:
    """The loaded servables of every configured model, kept in step with the file system."""

    def __init__(self, server_config: model_server_config_pb2.ModelServerConfig, max_batch_size: int,
                 warm_up: Callable[[Servable], int] | None = None):
        self.max_batch_size = max_batch_size
        self._warm_up = warm_up
        self._lock = threading.Lock()
        self._models = {model.name: ModelEntry(model) for model in server_config.model_config_list.config}
        if not self._models:
            raise ValueError("the server config names no model (model_config_list is empty)")
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def refresh(self):
        """One poll: load versions that appeared, unload those that disappeared or the policy drops."""
        for entry in self._models.values():
            wanted = set(entry.wanted(_versions_on_disk(Path(entry.config.base_path))))
            for version in sorted(wanted - set(entry.servables)):
                if entry.statuses.get(version, VersionStatus(_State.UNKNOWN)).state == _State.END:
                    continue  # failed before; a new version number is needed to retry, as in TF Serving
                self._load(entry, version)
            for version in sorted(set(entry.servables) - wanted):
                with self._lock:
                    entry.servables.pop(version)
                    entry.statuses[version] = VersionStatus(_State.END)
                _LOG.info("unloaded %s version %d", entry.name, version)

    def _load(self, entry: ModelEntry, version: int):
        entry.statuses[version] = VersionStatus(_State.LOADING)
        started = time.monotonic()
        try:
            servable = Servable(Path(entry.config.base_path) / str(version), version, self.max_batch_size)
            replayed = self._warm_up(servable) if self._warm_up else 0
        except Exception as err:  # a broken version must not take the server down
            _LOG.error("failed to load %s version %d: %s", entry.name, version, err)
            entry.statuses[version] = VersionStatus(_State.END, f"{type(err).__name__}: {err}")
            return
        with self._lock:
            entry.servables[version] = servable
            entry.statuses[version] = VersionStatus(_State.AVAILABLE)
        _LOG.info("loaded %s version %d in %.1fs (%d warm-up requests replayed)",
                  entry.name, version, time.monotonic() - started, replayed)

    def start_polling(self, interval_seconds: float):
        def poll():
            while not self._stop.wait(interval_seconds):
                try:
                    self.refresh()
                except Exception:  # keep polling: the next look at the file system may succeed
                    _LOG.exception("polling the model base paths failed")

        self._poller = threading.Thread(target=poll, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join()

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request, refused with TF Serving's words (server_core.cc, basic_manager.cc)."""
        if label is not None:
            labels = dict(self._models[name].config.version_labels) if name in self._models else {}
            if label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = labels[label]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        entry = self._models.get(name)
        with self._lock:
            servables = dict(entry.servables) if entry else {}
        if version is None and servables:
            return servables[max(servables)]
        if version not in servables:
            raise not_found(f"Servable not found for request: {request}")
        return servables[version]

    def statuses(self, name: str, version: int | None = None) -> dict[int, VersionStatus]:
        """Every known version's state, or one version's (get_model_status_impl.cc)."""
        entry = self._models.get(name)
        with self._lock:
            statuses = dict(entry.statuses) if entry else {}
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: statuses[version]}
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        return statuses
