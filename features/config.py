"""The config schema: one YAML file is the single source of truth for a ranking problem.

The pipeline, the trainer, the evaluator and the exporter all read the same
`Config`, so they cannot disagree about a column, a feature or a task. The file
is validated once, here, and every error names the offending key
(``features[3] (item_price).transform: ...``) so a typo is found in seconds.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.atomic_files import write_atomically
from features.errors import RecsysError


class ConfigError(RecsysError, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt option silently falling back to its
    # default is the most expensive kind of config bug.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Section):
    """A raw input column as it appears in the logs."""

    name: str
    type: Literal["string", "int", "float", "string_list"]
    required: bool = True
    default: str | int | float | None = None
    separator: str = "|"
    max_items: int = Field(1000, gt=0, description="more items than this is malformed")


class Feature(_Section):
    """A model input derived from one raw column by one transform."""

    name: str
    column: str | None = None
    # who the feature describes: serving's request-level split and SSL's item views read it; tabular data can leave it
    group: Literal["user", "item", "context"] = "context"
    transform: Literal["vocabulary", "hash", "bucketize", "zscore", "log_zscore"]
    embedding_dim: int = Field(8, gt=0)
    oov_buckets: int = Field(1, ge=1)
    min_frequency: int = Field(1, ge=1)
    top_k: int | None = Field(None, gt=0)
    hash_buckets: int | None = Field(None, gt=0)
    num_buckets: int | None = Field(None, gt=1)
    max_length: int | None = Field(None, gt=0)

    @property
    def source(self) -> str:
        return self.column or self.name

    @property
    def is_categorical(self) -> bool:
        return self.transform in ("vocabulary", "hash", "bucketize")


class Sequence(_Section):
    """A user behaviour sequence (items clicked, carted, ...) sharing an item feature's ids."""

    name: str
    column: str
    behavior: str
    item_feature: str
    max_length: int = Field(20, gt=0)


class Task(_Section):
    """A prediction target. `sample_space` names the task whose positives it lives on."""

    name: str
    label: str
    type: Literal["binary", "regression"] = "binary"
    sample_space: str | None = None
    weight: float = Field(1.0, ge=0.0)
    label_transform: Literal["none", "log1p"] = "none"  # regression: fit log1p(label), serve the inverse


class Esmm(_Section):
    ctr_task: str
    cvr_task: str
    ctcvr_name: str = "ctcvr"


class ExpertsConfig(_Section):
    """Expert counts and shapes for the mixture-of-experts backbones."""

    num_experts: int = Field(4, gt=0, description="MMoE: experts shared by all tasks")
    task_experts: int = Field(2, gt=0, description="PLE/CGC/AdaTT: experts per task per level")
    shared_experts: int = Field(1, ge=0, description="PLE/CGC (at least 1) and AdaTT (0 allowed)")
    num_levels: int = Field(2, gt=0, description="PLE/AdaTT levels; CGC is always one")
    units: list[int] = Field([64], min_length=1, description="each expert's MLP")


class ModelConfig(_Section):
    bottom: Literal["shared", "dtrn"] = "shared"  # dtrn: task-specific bottom (needs sequences)
    dtrn_attention_units: int = Field(32, gt=0, description="DTRN's Transformer: per-head attention size and "
                                      "feed-forward width")
    backbone: Literal["shared_bottom", "mmoe", "ple", "cgc", "adatt"] = "shared_bottom"
    structure: Literal["independent", "esmm"] = "independent"
    esmm: Esmm | None = None
    experts: ExpertsConfig = ExpertsConfig()
    # Unset: the backbone's paper form (see `paper_bottom_units`).
    bottom_units: list[int] = Field(None, validate_default=True)
    tower_units: list[int] = [64]
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation: str = "relu"
    l2: float = Field(0.0, ge=0.0)
    embedding_l2: float = Field(0.0, ge=0.0)

    @staticmethod
    def paper_bottom_units(backbone: str, bottom: str) -> list[int]:
        """The shared MLP in front of the backbone that the backbone's paper has.

        Shared-Bottom is that MLP (Caruana, 1997). MMoE, PLE/CGC and AdaTT feed
        the input straight to their experts, and the task-specific DTRN bottom
        is itself the bottom, so those get none unless `bottom_units` asks.
        """
        return [256, 128] if backbone == "shared_bottom" and bottom == "shared" else []

    @pydantic.field_validator("bottom_units", mode="before")
    @classmethod
    def _paper_form_unless_given(cls, units, info: pydantic.ValidationInfo):
        if units is not None:
            return units
        return cls.paper_bottom_units(info.data.get("backbone", "shared_bottom"), info.data.get("bottom", "shared"))


class TrainingConfig(_Section):
    batch_size: int = Field(512, gt=0)
    epochs: int = Field(5, gt=0)
    learning_rate: float = Field(1e-3, gt=0.0)
    # adam, or lazy_adam: sparse updates of the tables above dense_update_max_rows touch only
    # the rows a batch looked up, so a step's cost follows the batch, not the table (see recsys.optimizers).
    optimizer: Literal["adam", "lazy_adam"] = "adam"
    # Epochs without improvement of `monitor` before training stops (0 and 1: at the first);
    # null: never stop. The published weights are those of the best epoch by `monitor`, or with null the last.
    early_stopping_patience: int | None = Field(2, ge=0)
    shuffle_buffer: int = Field(10_000, gt=0)
    monitor: str = "val_total_loss"  # early stopping and best checkpoint; '..._auc' is maximised
    model_dir: str | None = None  # default <artifacts_dir>/model; several models can share one dataset
    loss_balancing: Literal["fixed", "uncertainty", "pcgrad"] = "fixed"
    metrics_on_train: bool = False  # AUC on every training batch costs throughput; eval always has them
    # Throughput. These models are small and op-bound on CPU: XLA fuses the
    # optimiser step's thousands of tiny ops (about twice as fast once compiled,
    # but compiling takes tens of seconds, so it pays on long runs), and several
    # steps per call save host round trips.
    jit_compile: bool = False
    steps_per_execution: int = Field(8, gt=0)
    # Embedding tables with at most this many rows get dense gradients: one
    # scatter-add instead of Adam's sparse de-duplication (Unique), which XLA
    # compiles poorly on CPU. Bigger tables keep sparse updates. Unset: see
    # `effective_dense_update_max_rows`.
    dense_update_max_rows: int | None = Field(None, ge=0)
    # Parse the training split once and keep it in memory, reshuffling every row
    # each epoch; for data that fits in RAM (otherwise shards stream from disk).
    in_memory: bool = False
    # tf.distribute strategy (recsys/distribution.py); auto: from TF_CONFIG and the local GPUs
    distribution: Literal["auto", "mirrored", "multi_worker", "parameter_server"] = "auto"

    @property
    def effective_dense_update_max_rows(self) -> int:
        """`dense_update_max_rows`, or when unset the faster limit for this optimiser and compilation.

        Measured per step on one table (benchmarks/results/embedding_update.md):
        under XLA the dense update is the fastest at 100k rows (5.6 ms against
        32-38 ms for either sparse path, whose Unique XLA compiles to a sort);
        without XLA, lazy Adam's sparse update wins at 100k rows (7.1 against
        13.9 ms dense) and loses narrowly at 10k (7.9 against 6.5), while plain
        Adam's sparse path, which also touches every row, wins at neither.
        """
        if self.dense_update_max_rows is not None:
            return self.dense_update_max_rows
        return 20_000 if self.optimizer == "lazy_adam" and not self.jit_compile else 200_000


class SlotsConfig(_Section):
    """`format: slots`: lines of leading values then `field:id` tokens (PaddleRec's Ali-CCP, libsvm-like logs).

    ``1,0,0,101:12,150_14:18,150_14:19`` with ``leading: [sample_id, click, purchase]`` and
    ``fields: {"101": user_id, "150_14": user_tags}`` gives sample_id 1, click 0, purchase 0,
    user_id '12' and user_tags ['18', '19']. A field mapped to a `string_list` column collects
    every occurrence; a single-valued column whose field repeats is a dead letter.
    """

    leading: list[str] = Field(..., min_length=1, description="columns of the first tokens, by position")
    fields: dict[str, str] = Field(..., min_length=1, description="field id -> column")
    token_separator: str = Field(",", min_length=1)
    field_separator: str = Field(":", min_length=1, description="between a token's field id and value")
    unknown_fields: Literal["ignore", "dead_letter"] = "ignore"  # counted either way (manifest)


class InputConfig(_Section):
    """Where the raw rows are and how they are written.

    Either one `path` (split by a stable hash, see `split`), or the splits as
    given: `train` (required), `eval` and `test` (optional; without `eval`, eval
    rows are hashed out of train). Each is a file or glob; relative paths are
    relative to the config file.
    """

    path: str | None = None
    train: str | None = None
    eval: str | None = None
    test: str | None = None
    # csv | parquet | tfrecord (serialized tf.Example, gzip or not) | slots; inferred from the extension
    format: Literal["csv", "parquet", "tfrecord", "slots"] | None = None
    # CSV dialect
    header: bool = Field(True, description="false: no header line; names and order from column_names or columns")
    column_names: list[str] = Field([], description="a headerless file's columns in order (default: columns)")
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote_char: str | None = Field('"', min_length=1, max_length=1, description="null: no quoting")
    null_values: list[str] = Field([], description="texts meaning 'missing' besides the empty string, e.g. '?'")
    strip: bool = Field(False, description="trim blanks around every value (Census-Income writes ', ')")
    slots: SlotsConfig | None = None

    @pydantic.model_validator(mode="after")
    def _one_layout(self):
        if (self.path is None) == (self.train is None):
            raise ValueError("give either `path` (one input, split by hash) or `train` "
                             "(with optional `eval` and `test`, kept as given)")
        if self.path is not None and (self.eval or self.test):
            raise ValueError("`eval`/`test` go with `train`, not with `path`")
        if (self.format == "slots") != (self.slots is not None):
            raise ValueError("format 'slots' needs a `slots` section, and only it takes one")
        return self

    @property
    def patterns(self) -> dict[str | None, str]:
        """{split name or None (hash-split): file or glob}."""
        if self.path is not None:
            return {None: self.path}
        given = {"train": self.train, "eval": self.eval, "test": self.test}
        return {split: pattern for split, pattern in given.items() if pattern}

    @property
    def first_pattern(self) -> str:
        return self.path or self.train


class SplitConfig(_Section):
    """The hashed split of one input (or of `input.train` when no `input.eval` is given).

    `key` hashes one column (rows sharing a key stay together: split by user to
    keep a user's history out of eval). Without a key the whole validated row
    is hashed (every configured column, typed), so identical rows fall together.
    """

    key: str | None = None
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="a test split hashed out too (one input only)")


class PipelineConfig(_Section):
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    num_shards: int = Field(4, gt=0)
    runner: str = "FnApiRunner"
    # beam: Beam + tf.Transform analyzers (runs on Dataflow, Flink, Spark; the reference).
    # columnar: one process on Arrow batches, same artifacts, much faster (pipelines/columnar/).
    # auto: columnar where it reads the input (CSV, Parquet) and the runner is local, without ssl; else beam.
    engine: Literal["auto", "beam", "columnar"] = "auto"
    # A row whose downstream label is set outside its sample space (a purchase without a
    # click): reject it (dead letter), drop it (counted), or repair it (clear the downstream label, counted).
    sample_space_violations: Literal["reject", "drop", "repair"] = "reject"


class ExportConfig(_Section):
    model_name: str
    base_path: str | None = None
    keep_versions: int = Field(3, gt=0)


class ServingConfig(_Section):
    """Warm-up rows written with each export, the local stand-in server, and the generated TF Serving config."""

    warmup_rows: int = Field(16, gt=0, le=1000, description="sample rows replayed when a version loads")
    rest_port: int = Field(8501, ge=0, lt=65536)
    grpc_port: int = Field(8500, ge=0, lt=65536)
    max_batch_size: int = Field(1024, gt=0, description="larger requests are refused, as by TF Serving's batcher")
    poll_seconds: float = Field(2.0, gt=0, description="how often the base path is checked for new versions")
    version_policy: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = Field(1, gt=0, description="versions served under the `latest` policy")
    versions: list[int] = Field([], description="versions served under the `specific` policy")
    version_labels: dict[str, int] = Field({}, description="e.g. {stable: 3, canary: 4}")
    batch_timeout_micros: int = Field(1000, ge=0)
    num_batch_threads: int = Field(4, gt=0)
    max_enqueued_batches: int = Field(100, gt=0)

    @pydantic.model_validator(mode="after")
    def _labels_name_served_versions(self):
        # TF Serving only lets a label point at a version its policy loads.
        if self.version_policy == "specific" and not self.versions:
            raise ValueError("version_policy 'specific' needs `versions`")
        stray = {label: v for label, v in self.version_labels.items()
                 if self.version_policy == "specific" and v not in self.versions}
        if stray or (self.version_labels and self.version_policy == "latest" and self.num_versions < 2):
            raise ValueError(f"version_labels {stray or self.version_labels} must name versions the policy serves: "
                             "use version_policy 'specific' with those `versions` (or 'all')")
        return self


class SliceConfig(_Section):
    """One way to cut the eval set: a feature's values, or a derived bucket.

    `feature` slices by a config feature (categorical: one slice per value, the
    `top_values` most frequent kept and the rest pooled as 'other'; numeric:
    `buckets` quantile buckets). `derived` is 'item_popularity' (deciles of the
    item's train impressions) or 'user_history' (new vs returning user).
    """

    feature: str | None = None
    derived: Literal["item_popularity", "user_history"] | None = None
    buckets: int = Field(10, gt=1, le=100)
    top_values: int = Field(10, gt=0)

    @property
    def name(self) -> str:
        return self.feature or self.derived


class BootstrapConfig(_Section):
    """Confidence intervals for the headline metrics by bootstrap over eval rows."""

    resamples: int = Field(200, ge=0, description="0 turns intervals off")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: int = 0


class ValidationThresholds(_Section):
    """How much a candidate may be worse than the published model and still be published."""

    max_auc_drop: float = Field(0.005, ge=0.0)
    max_logloss_increase: float = Field(0.01, ge=0.0, description="relative: 0.01 = 1% worse")
    max_rmse_increase: float = Field(0.02, ge=0.0, description="relative")


class ValidationConfig(ValidationThresholds):
    """Blessing before publishing: global thresholds, optionally overridden per task."""

    enabled: bool = True
    tasks: dict[str, ValidationThresholds] = {}


class EvaluationConfig(_Section):
    group_by: str | None = None
    truth: dict[str, str] = {}
    slices: list[SliceConfig] = []
    bootstrap: BootstrapConfig = BootstrapConfig()
    thresholds: list[float] = Field([0.1, 0.3, 0.5], description="precision/recall cut-offs")
    calibration_bins: int = Field(10, gt=1, le=100)
    validation: ValidationConfig = ValidationConfig()


class SslConfig(_Section):
    """Self-supervised item augmentation (Yao et al., CIKM 2021): a contrastive loss on two masked item views."""

    enabled: bool = False
    strategy: Literal["rfm", "cfm"] = "cfm"  # random or correlated (mutual-information) feature masking
    alpha: float = Field(0.1, ge=0.0, description="weight of the contrastive loss beside the ranking loss")
    temperature: float = Field(0.1, gt=0.0)
    mask_rate: float = Field(0.5, gt=0.0, lt=1.0, description="share of item features masked in view one")
    dropout_rate: float = Field(0.1, ge=0.0, lt=1.0, description="values dropped from multi-valued features")
    item_sampling: Literal["catalogue", "impressions"] = "catalogue"
    item_features: list[str] = []  # default: every feature with group 'item'; the first one keys the corpus
    encoder_units: list[int] = Field([64], min_length=1, description="item tower; the last is the view size")
    batch_size: int | None = Field(None, gt=0, description="items per step (default training.batch_size)")


class Config(_Section):
    name: str
    seed: int = 42
    artifacts_dir: str | None = None
    input: InputConfig
    columns: list[Column]
    # keys every feature takes unless it sets them itself, e.g. {embedding_dim: 16, oov_buckets: 2}
    feature_defaults: dict = {}
    features: list[Feature]
    sequences: list[Sequence] = []
    tasks: list[Task]
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    pipeline: PipelineConfig = PipelineConfig()
    export: ExportConfig
    serving: ServingConfig = ServingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    ssl: SslConfig = SslConfig()

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    @property
    def input_format(self) -> str:
        if self.input.format:
            return self.input.format
        path = self.input.first_pattern.lower()
        for suffix in (".gz", ".bz2", ".zst", ".zstd"):
            path = path.removesuffix(suffix)
        if path.endswith(".parquet"):
            return "parquet"
        return "tfrecord" if path.endswith((".tfrecord", ".tfrecords")) else "csv"

    @property
    def split_names(self) -> list[str]:
        """The splits this config produces: train and eval always, test when given or hashed out."""
        has_test = self.input.test is not None or (self.input.path is not None and self.split.test_fraction > 0)
        return ["train", "eval"] + (["test"] if has_test else [])

    @property
    def raw_column_names(self) -> list[str]:
        """A headerless CSV's columns in file order."""
        return list(self.input.column_names) or [c.name for c in self.columns]

    @property
    def label_columns(self) -> list[str]:
        return list(dict.fromkeys(t.label for t in self.tasks))

    @property
    def feature_columns(self) -> list[str]:
        """Raw columns a model needs at serving time (labels and truth never are)."""
        used = [f.source for f in self.features] + [s.column for s in self.sequences]
        return list(dict.fromkeys(used))

    @property
    def transform_input_columns(self) -> list[str]:
        """Columns that enter tf.Transform: features, labels and evaluation-only passthroughs."""
        return list(dict.fromkeys(self.feature_columns + self.label_columns + self.passthrough_columns))

    @property
    def output_names(self) -> list[str]:
        """Every score the model outputs: one per task, plus pCTCVR under ESMM."""
        names = [t.name for t in self.tasks]
        if self.model.structure == "esmm" and self.model.esmm is not None:
            names.append(self.model.esmm.ctcvr_name)
        return names

    @property
    def passthrough_columns(self) -> list[str]:
        """Columns carried to the eval data untransformed, for evaluation only."""
        return list(dict.fromkeys(self.evaluation.truth.values()))

    @property
    def ssl_item_features(self) -> list[str]:
        """Item features the self-supervised views mask: `ssl.item_features`, else every item-group feature."""
        return list(self.ssl.item_features) or [f.name for f in self.features if f.group == "item"]

    @property
    def artifacts(self) -> Path:
        return Path(self.artifacts_dir or f"artifacts/{self.name}")

    @property
    def model_dir(self) -> Path:
        return Path(self.training.model_dir) if self.training.model_dir else self.artifacts / "model"

    @property
    def served_model_dir(self) -> Path:
        """`<base>/<model_name>/`, holding one integer-named directory per version."""
        base = Path(self.export.base_path) if self.export.base_path else self.artifacts / "serving"
        return base / self.export.model_name


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def _merged(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merged(base[key], value) if both_maps else value
    return merged


def _read_with_base(path: Path, seen: tuple = ()) -> dict:
    """A config file, on top of the file its `base:` key names (relative to it), recursively."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: base: configs include each other in a cycle")
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    return _merged(_read_with_base(path.parent / base, seen + (path.resolve(),)), raw)


def load_config(path: str | Path) -> Config:
    """Reads and validates a YAML config; relative input paths are relative to the file.

    A config may start from another with `base: other.yaml` and override only
    what differs (mappings merge; lists and values replace).
    """
    path = Path(path)
    config = parse_config(_read_with_base(path), source=str(path))
    resolved = {key: _relative_to(path.parent, pattern) for key in ("path", "train", "eval", "test")
                if (pattern := getattr(config.input, key)) is not None}
    return config.model_copy(update={"input": config.input.model_copy(update=resolved)})


def _relative_to(directory: Path, pattern: str) -> str:
    if Path(pattern).is_absolute() or "://" in pattern:
        return pattern
    return (directory / pattern).as_posix()


def _with_feature_defaults(raw: dict, source: str) -> dict:
    """`feature_defaults` filled into every feature that does not set the key itself."""
    defaults = raw.get("feature_defaults") or {}
    refused = (sorted(k for k in defaults if k not in Feature.model_fields or k in ("name", "column"))
               if isinstance(defaults, dict) else ["(not a mapping)"])
    if refused:
        raise ConfigError(f"{source}: invalid config:\n  feature_defaults: {', '.join(map(str, refused))} "
                          "cannot be defaulted (give a feature's keys other than name and column)")
    if not defaults or not isinstance(raw.get("features"), list):
        return raw
    features = [{**defaults, **f} if isinstance(f, dict) else f for f in raw["features"]]
    return {**raw, "features": features}


def parse_config(raw: dict, source: str = "config") -> Config:
    """Validates a config mapping: types and ranges first, then cross-references."""
    raw = _with_feature_defaults(raw, source)
    try:
        config = Config.model_validate(raw)
    except pydantic.ValidationError as err:
        lines = [_describe_error(raw, e) for e in err.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None
    problems = list(_reference_problems(config))
    if problems:
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems))
    return config


def _all_keys() -> set[str]:
    sections = [Column, Feature, Sequence, Task, Esmm, ModelConfig, TrainingConfig, InputConfig, SlotsConfig,
                SplitConfig, PipelineConfig, ExportConfig, EvaluationConfig, SslConfig, Config,
                SliceConfig, BootstrapConfig, ValidationConfig]
    return {key for section in sections for key in section.model_fields}


def _key_path(raw: dict, loc: tuple) -> str:
    """`features[3] (item_price).transform`: list positions plus the item's name when it has one."""
    parts, node = [], raw
    for step in loc:
        if isinstance(step, int):
            item = node[step] if isinstance(node, list) and step < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1] += f"[{step}]" + (f" ({name})" if name else "")
            node = item
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "<top level>"


def _describe_error(raw: dict, error: dict) -> str:
    where = _key_path(raw, error["loc"])
    if error["type"] == "extra_forbidden":
        unknown = str(error["loc"][-1])
        guess = difflib.get_close_matches(unknown, _all_keys(), n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"{where}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def _duplicates(names: list[str]) -> set[str]:
    return {n for n in names if names.count(n) > 1}


def _reference_problems(config: Config):
    """Yields every cross-reference error, each naming the key at fault."""
    columns = {c.name: c for c in config.columns}
    for dup in _duplicates([c.name for c in config.columns]):
        yield f"columns: column '{dup}' is declared more than once"
    input_names = [f.name for f in config.features] + [s.name for s in config.sequences]
    for dup in _duplicates(input_names):
        yield f"features/sequences: name '{dup}' is used more than once"
    for dup in _duplicates([t.name for t in config.tasks]):
        yield f"tasks: task '{dup}' is declared more than once"
    for i, column in enumerate(config.columns):
        if column.required and column.default is not None:
            yield f"columns[{i}] ({column.name}).default: only optional columns take a default"
        if not column.required and column.default is None and column.type in ("int", "float"):
            yield f"columns[{i}] ({column.name}).default: an optional {column.type} column needs one"
    yield from _feature_problems(config, columns)
    yield from _sequence_problems(config, columns)
    yield from _task_problems(config, columns)
    yield from _other_problems(config, columns)


_TRANSFORM_TYPES = {
    "vocabulary": ("string", "int", "string_list"),
    "hash": ("string", "int", "string_list"),
    "bucketize": ("int", "float"),
    "zscore": ("int", "float"),
    "log_zscore": ("int", "float"),
}


def _feature_problems(config: Config, columns: dict[str, Column]):
    for i, feature in enumerate(config.features):
        where = f"features[{i}] ({feature.name})"
        column = columns.get(feature.source)
        if column is None:
            yield f"{where}.column: no column named '{feature.source}' in columns"
            continue
        if column.type not in _TRANSFORM_TYPES[feature.transform]:
            yield (f"{where}.transform: '{feature.transform}' needs a column of type "
                   f"{' or '.join(_TRANSFORM_TYPES[feature.transform])}, "
                   f"but '{column.name}' is {column.type}")
        if feature.transform == "hash" and feature.hash_buckets is None:
            yield f"{where}.hash_buckets: required for transform 'hash'"
        if feature.transform == "bucketize" and feature.num_buckets is None:
            yield f"{where}.num_buckets: required for transform 'bucketize'"
        if column.type == "string_list" and feature.max_length is None:
            yield f"{where}.max_length: required for the multi-valued column '{column.name}'"


def _sequence_problems(config: Config, columns: dict[str, Column]):
    features = {f.name: f for f in config.features}
    for i, sequence in enumerate(config.sequences):
        where = f"sequences[{i}] ({sequence.name})"
        column = columns.get(sequence.column)
        if column is None:
            yield f"{where}.column: no column named '{sequence.column}' in columns"
        elif column.type != "string_list":
            yield f"{where}.column: '{sequence.column}' must be a string_list column, not {column.type}"
        item = features.get(sequence.item_feature)
        if item is None:
            yield f"{where}.item_feature: no feature named '{sequence.item_feature}'"
        elif item.transform != "vocabulary" or columns.get(item.source, column).type == "string_list":
            yield (f"{where}.item_feature: '{item.name}' must be a single-valued vocabulary "
                   "feature so the sequence can share its ids and embeddings")


def _task_problems(config: Config, columns: dict[str, Column]):
    tasks = {t.name: t for t in config.tasks}
    feature_columns = set(config.feature_columns)
    for i, task in enumerate(config.tasks):
        where = f"tasks[{i}] ({task.name})"
        column = columns.get(task.label)
        if column is None:
            yield f"{where}.label: no column named '{task.label}' in columns"
        elif column.type not in ("int", "float"):
            yield f"{where}.label: '{task.label}' must be an int or float column, not {column.type}"
        if task.label in feature_columns:
            yield f"{where}.label: '{task.label}' is also a feature's column (the label would leak)"
        if task.label_transform != "none" and task.type != "regression":
            yield f"{where}.label_transform: only regression tasks take a label transform"
        if task.sample_space is not None:
            space = tasks.get(task.sample_space)
            if space is None:
                yield f"{where}.sample_space: no task named '{task.sample_space}'"
            elif space.type != "binary" or space.sample_space is not None or space is task:
                yield (f"{where}.sample_space: '{task.sample_space}' must be a binary task "
                       "over all impressions")


def _input_problems(config: Config, columns: dict[str, Column]):
    source = config.input
    if config.split.key is not None and config.split.key not in columns:
        yield f"split.key: no column named '{config.split.key}' in columns"
    if config.split.test_fraction and source.path is None:
        yield "split.test_fraction: only for one input (input.path); give input.test for files kept as given"
    if config.split.eval_fraction + config.split.test_fraction >= 1.0:
        yield "split: eval_fraction + test_fraction must leave rows for train"
    if source.column_names:
        for dup in _duplicates(list(source.column_names)):
            yield f"input.column_names: '{dup}' is listed more than once"
        for name in columns:
            if name not in source.column_names and columns[name].required:
                yield f"input.column_names: required column '{name}' is not among the file's columns"
        if source.header:
            yield "input.column_names: only for files without a header (input.header: false)"
    if source.null_values and "" in source.null_values:
        yield "input.null_values: the empty string is always missing; list only other texts"
    if source.slots is not None:
        mapped = list(source.slots.leading) + list(source.slots.fields.values())
        for name in mapped:
            if name not in columns:
                yield f"input.slots: no column named '{name}' in columns"
        for dup in _duplicates(mapped):
            yield f"input.slots: column '{dup}' is mapped more than once"
    for i, column in enumerate(config.columns):
        if column.type == "string_list" and column.separator == source.delimiter and config.input_format == "csv":
            yield (f"columns[{i}] ({column.name}).separator: '{column.separator}' is also input.delimiter; "
                   "list items need another separator")


def _other_problems(config: Config, columns: dict[str, Column]):
    yield from _input_problems(config, columns)
    feature_columns = set(config.feature_columns)
    for task_name, column in config.evaluation.truth.items():
        if task_name not in config.output_names:
            yield (f"evaluation.truth.{task_name}: '{task_name}' is not a model output "
                   f"({', '.join(config.output_names)})")
        if column not in columns:
            yield f"evaluation.truth.{task_name}: no column named '{column}' in columns"
        elif column in feature_columns:
            yield f"evaluation.truth.{task_name}: '{column}' is a feature's column (truth would leak)"
    if config.evaluation.group_by and config.evaluation.group_by not in {f.name for f in config.features}:
        yield f"evaluation.group_by: no feature named '{config.evaluation.group_by}'"
    yield from _evaluation_problems(config)
    yield from _esmm_problems(config)
    yield from _backbone_problems(config)
    yield from _ssl_problems(config)


def _ssl_problems(config: Config):
    if not config.ssl.enabled:
        return
    features = {f.name: f for f in config.features}
    for i, name in enumerate(config.ssl.item_features):
        if name not in features:
            yield f"ssl.item_features[{i}]: no feature named '{name}'"
    for dup in _duplicates(list(config.ssl.item_features)):
        yield f"ssl.item_features: '{dup}' is listed more than once"
    if config.pipeline.engine == "columnar":
        yield ("ssl.enabled: the item corpus and mutual information are Beam steps; "
               "use pipeline.engine 'beam' (the default) with ssl")
    names = config.ssl_item_features
    if len(names) < 2:
        yield (f"ssl.item_features: two views need at least two item features to split between them, "
               f"got {names or 'none (no feature has group: item)'}")
    elif names[0] in features:
        key = features[names[0]]
        if not key.is_categorical or config.column(key.source).type == "string_list":
            yield (f"ssl.item_features: the first, '{key.name}', keys the item corpus and must be a "
                   "single-valued categorical feature (the item id)")


def _evaluation_problems(config: Config):
    features = {f.name for f in config.features}
    for i, spec in enumerate(config.evaluation.slices):
        where = f"evaluation.slices[{i}]"
        if (spec.feature is None) == (spec.derived is None):
            yield f"{where}: give exactly one of 'feature' or 'derived'"
        elif spec.feature and spec.feature not in features:
            yield f"{where}.feature: no feature named '{spec.feature}'"
        elif spec.feature and config.column(config.feature(spec.feature).source).type == "string_list":
            yield f"{where}.feature: '{spec.feature}' is multi-valued; a row would fall in several slices"
        elif spec.derived == "user_history" and not config.evaluation.group_by:
            yield f"{where}.derived: 'user_history' needs evaluation.group_by (the user id feature)"
        elif spec.derived == "item_popularity" and not (
                config.sequences or any(f.group == "item" and f.is_categorical for f in config.features)):
            yield f"{where}.derived: 'item_popularity' needs a categorical item feature (the item id)"
    for task in config.evaluation.validation.tasks:
        if task not in config.output_names:
            yield (f"evaluation.validation.tasks.{task}: '{task}' is not a model output "
                   f"({', '.join(config.output_names)})")
    for threshold in config.evaluation.thresholds:
        if not 0.0 < threshold < 1.0:
            yield f"evaluation.thresholds: {threshold} is not strictly between 0 and 1"


def _backbone_problems(config: Config):
    if config.model.bottom == "dtrn":
        if not config.sequences:
            yield "model.bottom: 'dtrn' needs behaviour sequences (the sequences section is empty)"
        if config.model.bottom_units:
            yield "model.bottom_units: must be [] with the task-specific 'dtrn' bottom"
    if config.model.backbone in ("ple", "cgc") and config.model.experts.shared_experts < 1:
        yield f"model.experts.shared_experts: {config.model.backbone} needs at least one shared expert"


def _esmm_problems(config: Config):
    model = config.model
    if model.structure != "esmm":
        if model.esmm is not None:
            yield "model.esmm: only used with model.structure 'esmm'"
        return
    if model.esmm is None:
        yield "model.esmm: required when model.structure is 'esmm' (ctr_task, cvr_task)"
        return
    tasks = {t.name: t for t in config.tasks}
    ctr, cvr = tasks.get(model.esmm.ctr_task), tasks.get(model.esmm.cvr_task)
    if ctr is None:
        yield f"model.esmm.ctr_task: no task named '{model.esmm.ctr_task}'"
    if cvr is None:
        yield f"model.esmm.cvr_task: no task named '{model.esmm.cvr_task}'"
    elif cvr.sample_space != model.esmm.ctr_task or cvr.type != "binary":
        yield (f"model.esmm.cvr_task: '{cvr.name}' must be a binary task whose sample_space "
               f"is '{model.esmm.ctr_task}'")
    if model.esmm.ctcvr_name in tasks:
        yield f"model.esmm.ctcvr_name: '{model.esmm.ctcvr_name}' clashes with a task name"


MODEL_CONFIG_FILE = "config.yaml"


def write_model_config(config: Config, model_dir: Path):
    """The resolved config beside a trained model's weights, so the directory describes itself.

    Every path in it is absolute (input, artifacts, model), so `compare`, `evaluate` and
    `export` can take the model directory alone, wherever they run from.
    """
    resolved = config.model_copy(update={
        "artifacts_dir": str(config.artifacts.resolve()),
        "training": config.training.model_copy(update={"model_dir": str(Path(model_dir).resolve())}),
        "input": config.input.model_copy(update={
            key: str(Path(pattern).resolve()) if "://" not in pattern else pattern
            for key in ("path", "train", "eval", "test") if (pattern := getattr(config.input, key)) is not None}),
    })
    raw = resolved.model_dump(mode="json", exclude_defaults=True)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    write_atomically(Path(model_dir) / MODEL_CONFIG_FILE, yaml.safe_dump(raw, sort_keys=False))
