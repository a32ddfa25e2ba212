"""Seeded synthetic impression logs with known ground truth.

The generator simulates an e-commerce feed as an impression -> click ->
conversion funnel. Every row carries the exact probabilities that produced its
labels (`true_ctr`, `true_cvr`, `true_ctcvr`), so a trained model can be scored
against the truth rather than only against noisy labels. The conversion model
penalises "attractive" (clickbait) items that the click model rewards, so the
clicked population differs from all impressions: the sample-selection bias that
ESMM-style multi-task models exist to correct.

Rows are produced in fixed-size blocks, each drawn from its own seeded random
stream, and written chunk by chunk, so millions of rows never sit in memory and
the output depends on the spec's seed and sizes but not on `chunk_rows`.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import io
import os
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS: tuple[str, ...] = (
    "impression_id",
    "timestamp",
    "user_id",
    "user_age",
    "user_gender",
    "user_city",
    "user_activity",
    "item_id",
    "item_category",
    "item_brand",
    "item_price",
    "item_tags",
    "device",
    "hour",
    "position",
    "hist_click_items",
    "hist_cart_items",
    "hist_purchase_items",
    "click",
    "conversion",
    "dwell_time",
    "true_ctr",
    "true_cvr",
    "true_ctcvr",
)

# Catalogue shape.
LATENT_DIM = 8
NUM_CATEGORIES = 30
NUM_BRANDS = 200
NUM_TAGS = 100
NUM_CITIES = 50
TAGS_PER_CATEGORY = 8  # the category-specific subset most of an item's tags come from
MAX_POSITION = 20
GENDERS = np.array(["F", "M", "U"], dtype=object)
GENDER_SHARE = (0.49, 0.46, 0.05)
DEVICES = np.array(["ios", "android", "web"], dtype=object)
DEVICE_SHARE = (0.40, 0.45, 0.15)
CATEGORY_LABELS = np.array([f"cat{k}" for k in range(NUM_CATEGORIES)], dtype=object)
BRAND_LABELS = np.array([f"b{k}" for k in range(NUM_BRANDS)], dtype=object)
CITY_LABELS = np.array([f"c{k}" for k in range(NUM_CITIES)], dtype=object)

# Time: the log spans about two weeks whatever its size, so hours are varied.
START_TIMESTAMP = 1_700_000_000
LOG_SPAN_SECONDS = 14 * 24 * 3600

# Each model's intercept is calibrated per catalogue (see _calibrated_intercepts) so
# that traffic hits these rates whichever items the seed happens to make popular.
TARGET_CTR = 0.10
TARGET_CVR_GIVEN_CLICK = 0.15
CALIBRATION_ROWS = 20_000

# Click model: logit = intercept + sum of the weighted terms below.
CLICK_AFFINITY_WEIGHT = 1.0  # on user.item latent dot / sqrt(LATENT_DIM)
CATEGORY_PREFERENCE_STRENGTHS = (1.2, 0.8, 0.5)  # a user's 1st, 2nd, 3rd favourite category
# Demographic segments (gender x age band) have their own category tastes, the
# kind of feature cross a ranker must learn; a small Dirichlet concentration
# makes segments' tastes sharp.
AGE_BAND_EDGES = (25, 35, 45, 55)
SEGMENT_TASTE_CONCENTRATION = 0.15
SEGMENT_TASTE_SHARE = 0.8  # the rest of a user's taste follows the catalogue's category mix
YOUNG_PRICE_SENSITIVITY_BOOST = 0.5  # log-scale, for users under the first age band edge
CLICK_QUALITY_WEIGHT = 0.4
CLICK_ATTRACTIVENESS_WEIGHT = 1.0
CLICK_POSITION_WEIGHT = 0.7  # times log(position): a strong slot bias, as in real feeds
DEVICE_CLICK_EFFECT = np.array([0.10, 0.0, -0.25])  # aligned with DEVICES
HOUR_CLICK_AMPLITUDE = 0.2  # sinusoid peaking at PEAK_HOUR
PEAK_HOUR = 21
CLICK_ACTIVITY_WEIGHT = 0.15  # times log(activity / MEDIAN_ACTIVITY)
MEDIAN_ACTIVITY = 3.0

# Conversion-given-click model: logit = intercept + terms below.
CONVERSION_QUALITY_WEIGHT = 0.8
CONVERSION_ATTRACTIVENESS_WEIGHT = -1.2  # clickbait converts worse
CONVERSION_CATEGORY_WEIGHT = 0.8  # times the click model's category preference
# Users buy what matches their taste: the latent match that drives clicks also
# drives conversion, so what the CTR task learns over all impressions is worth
# sharing with the CVR task, whose clicked-only data is ten times smaller.
CONVERSION_AFFINITY_WEIGHT = 1.0
PRICE_CENTER_LOG = 3.4  # price sensitivity acts on log(price) - this

# Downstream behaviour after a click.
CART_PROBABILITY_IF_CONVERTED = 0.95
CART_PROBABILITY_OTHERWISE = 0.2
DWELL_BASE_LOG_SECONDS = 3.0
DWELL_QUALITY_WEIGHT = 0.4
DWELL_CATEGORY_WEIGHT = 0.3
DWELL_SIGMA = 0.7

# Pre-filled past for a user's first appearance.
PREFILL_CANDIDATES = 24
PREFILL_MEAN_CLICKS = 4.0
PREFILL_CART_PROBABILITY = 0.3
PREFILL_PURCHASE_PROBABILITY = 0.4  # of carted items

# Rows per generation block; fixed so output does not depend on chunk_rows.
BLOCK_ROWS = 10_000


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic log: same spec, same bytes."""

    rows: int = 25_000
    seed: int = 7
    num_users: int | None = None  # default: max(200, rows // 15)
    num_items: int | None = None  # default: max(100, rows // 25)
    item_popularity_exponent: float = 1.1  # Zipf-like power law over items' impression share
    history_length: int = 20  # max items kept per behaviour sequence
    chunk_rows: int = 50_000

    def __post_init__(self):
        for name in ("rows", "history_length", "chunk_rows", "user_count", "item_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"SyntheticSpec.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def user_count(self) -> int:
        return self.num_users if self.num_users is not None else max(200, self.rows // 15)

    @property
    def item_count(self) -> int:
        return self.num_items if self.num_items is not None else max(100, self.rows // 25)


@dataclasses.dataclass(frozen=True)
class _Users:
    """Per-user attributes, observable and latent, indexed by user number."""

    age: np.ndarray
    gender: np.ndarray
    city: np.ndarray
    activity: np.ndarray
    latent: np.ndarray
    preferred_categories: np.ndarray  # (users, len(CATEGORY_PREFERENCE_STRENGTHS)), favourite first
    price_sensitivity: np.ndarray
    purchase_propensity: np.ndarray
    sampling_cdf: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Items:
    """Per-item attributes, observable and latent, indexed by item number."""

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    tags: np.ndarray
    latent: np.ndarray
    quality: np.ndarray
    attractiveness: np.ndarray
    popularity_cdf: np.ndarray


def _cdf(weights: np.ndarray) -> np.ndarray:
    """Normalised cumulative weights, for fast repeated sampling by searchsorted."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    return cumulative / cumulative[-1]


def _sample(cdf: np.ndarray, rng: np.random.Generator, size) -> np.ndarray:
    """Draws indices with probabilities given by a cdf from `_cdf`."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _power_law_weights(count: int, exponent: float) -> np.ndarray:
    """Weight rank**-exponent for ranks 1..count, most popular first."""
    return np.arange(1, count + 1, dtype=np.float64) ** -exponent


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logit))


def _labels(prefix: str, count: int) -> np.ndarray:
    """Object array of ids like u0, u1, ... so rows can pick theirs by indexing."""
    return np.array([f"{prefix}{k}" for k in range(count)], dtype=object)


def _segment_preferences(rng: np.random.Generator, gender: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Each user's favourite categories, drawn from their demographic segment's tastes."""
    segments = len(GENDERS) * (len(AGE_BAND_EDGES) + 1)
    segment = gender * (len(AGE_BAND_EDGES) + 1) + np.digitize(age, AGE_BAND_EDGES)
    catalogue_mix = _power_law_weights(NUM_CATEGORIES, 0.5)
    tastes = (SEGMENT_TASTE_SHARE * rng.dirichlet(np.full(NUM_CATEGORIES, SEGMENT_TASTE_CONCENTRATION), segments)
              + (1 - SEGMENT_TASTE_SHARE) * catalogue_mix / catalogue_mix.sum())
    draws = len(CATEGORY_PREFERENCE_STRENGTHS)
    return np.stack([_sample(_cdf(tastes[s]), rng, draws) for s in segment])


def _make_users(rng: np.random.Generator, count: int, category_centroids: np.ndarray) -> _Users:
    """Users with demographics, an activity level and the latent tastes that drive clicks."""
    age = np.clip(np.rint(rng.normal(35, 11, count)), 18, 70).astype(np.int64)
    gender = rng.choice(len(GENDERS), count, p=GENDER_SHARE)
    preferred = _segment_preferences(rng, gender, age)
    # Tastes lean towards the favourite category so latent and category signals agree.
    latent = 0.6 * category_centroids[preferred[:, 0]] + 0.8 * rng.standard_normal((count, LATENT_DIM))
    activity = np.round(rng.lognormal(np.log(MEDIAN_ACTIVITY), 0.6, count), 3)
    young = age < AGE_BAND_EDGES[0]
    return _Users(
        age=age,
        gender=gender,
        city=_sample(_cdf(_power_law_weights(NUM_CITIES, 1.0)), rng, count),
        activity=activity,
        latent=latent,
        preferred_categories=preferred,
        price_sensitivity=rng.lognormal(np.log(0.6) + YOUNG_PRICE_SENSITIVITY_BOOST * young, 0.4, count),
        purchase_propensity=rng.normal(0.0, 0.5, count),
        sampling_cdf=_cdf(activity),  # active users appear more often
    )


def _item_tags(rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
    """1-4 distinct tags per item joined by '|', mostly from its category's tag subset."""
    category_tags = np.stack(
        [rng.choice(NUM_TAGS, TAGS_PER_CATEGORY, replace=False) for _ in range(NUM_CATEGORIES)]
    )
    candidates = np.where(
        rng.random((len(categories), 6)) < 0.8,
        category_tags[categories[:, None], rng.integers(0, TAGS_PER_CATEGORY, (len(categories), 6))],
        rng.integers(0, NUM_TAGS, (len(categories), 6)),
    )
    wanted = rng.integers(1, 5, len(categories))
    joined = [
        "|".join(f"t{tag}" for tag in list(dict.fromkeys(row))[:n])
        for row, n in zip(candidates.tolist(), wanted.tolist())
    ]
    return np.array(joined, dtype=object)


def _make_items(
    rng: np.random.Generator, count: int, exponent: float, category_centroids: np.ndarray
) -> _Items:
    """Items with category, brand, price and tags, plus latent quality and clickbait appeal."""
    category = _sample(_cdf(_power_law_weights(NUM_CATEGORIES, 0.5)), rng, count)
    brand = rng.integers(0, NUM_BRANDS, count)
    category_log_price = rng.normal(PRICE_CENTER_LOG, 0.6, NUM_CATEGORIES)
    brand_quality = rng.normal(0.0, 0.3, NUM_BRANDS)
    popularity = np.empty(count)
    popularity[rng.permutation(count)] = _power_law_weights(count, exponent)  # ids hide popularity
    return _Items(
        category=category,
        brand=brand,
        price=np.round(np.exp(category_log_price[category] + rng.normal(0.0, 0.4, count)), 2),
        tags=_item_tags(rng, category),
        latent=0.8 * category_centroids[category] + 0.6 * rng.standard_normal((count, LATENT_DIM)),
        quality=brand_quality[brand] + rng.normal(0.0, 0.35, count),
        attractiveness=rng.normal(0.0, 0.7, count),
        popularity_cdf=_cdf(popularity),
    )


def _category_preference(users: _Users, user: np.ndarray, items: _Items, item: np.ndarray) -> np.ndarray:
    """How much each user favours each item's category; broadcasts like user + item."""
    matches = items.category[item][..., None] == users.preferred_categories[user]
    return np.max(matches * np.asarray(CATEGORY_PREFERENCE_STRENGTHS), axis=-1)


def _affinity(users: _Users, user: np.ndarray, items: _Items, item: np.ndarray) -> np.ndarray:
    """Latent user.item match, unit-variance scaled; broadcasts like user + item."""
    return np.sum(users.latent[user] * items.latent[item], axis=-1) / np.sqrt(LATENT_DIM)


def _taste_logit(users: _Users, user: np.ndarray, items: _Items, item: np.ndarray) -> np.ndarray:
    """The user-item part of the click logit: what a user would pick regardless of context."""
    return (
        CLICK_AFFINITY_WEIGHT * _affinity(users, user, items, item)
        + _category_preference(users, user, items, item)
        + CLICK_QUALITY_WEIGHT * items.quality[item]
        + CLICK_ATTRACTIVENESS_WEIGHT * items.attractiveness[item]
    )


def _context_logit(
    device: np.ndarray, hour: np.ndarray, position: np.ndarray, activity: np.ndarray
) -> np.ndarray:
    """Click-logit terms from the slot and session: position bias, device, hour, activity."""
    return (
        -CLICK_POSITION_WEIGHT * np.log(position)
        + DEVICE_CLICK_EFFECT[device]
        + HOUR_CLICK_AMPLITUDE * np.cos(2 * np.pi * (hour - PEAK_HOUR) / 24)
        + CLICK_ACTIVITY_WEIGHT * np.log(activity / MEDIAN_ACTIVITY)
    )


def _conversion_terms(users: _Users, user: np.ndarray, items: _Items, item: np.ndarray) -> np.ndarray:
    """Conversion-given-click logit less its intercept; defined for every impression."""
    return (
        CONVERSION_QUALITY_WEIGHT * items.quality[item]
        + CONVERSION_AFFINITY_WEIGHT * _affinity(users, user, items, item)
        - users.price_sensitivity[user] * (np.log(items.price[item]) - PRICE_CENTER_LOG)
        + users.purchase_propensity[user]
        + CONVERSION_ATTRACTIVENESS_WEIGHT * items.attractiveness[item]
        + CONVERSION_CATEGORY_WEIGHT * _category_preference(users, user, items, item)
    )


def _draw_slots(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Device codes (indices into DEVICES) and page positions 1..MAX_POSITION."""
    return rng.choice(len(DEVICES), rows, p=DEVICE_SHARE), rng.integers(1, MAX_POSITION + 1, rows)


def _intercept_for_rate(terms: np.ndarray, target: float, weights: np.ndarray) -> float:
    """The intercept b with weighted mean of sigmoid(b + terms) equal to target, by bisection."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.average(_sigmoid(middle + terms), weights=weights) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _calibrated_intercepts(rng: np.random.Generator, users: _Users, items: _Items) -> tuple[float, float]:
    """Click and conversion intercepts putting this catalogue's expected rates on target.

    A few head items take much of the traffic, so with fixed intercepts the overall
    rates would swing with whichever items the seed made popular.
    """
    user = _sample(users.sampling_cdf, rng, CALIBRATION_ROWS)
    item = _sample(items.popularity_cdf, rng, CALIBRATION_ROWS)
    device, position = _draw_slots(rng, CALIBRATION_ROWS)
    hour = rng.integers(0, 24, CALIBRATION_ROWS)
    click_terms = _taste_logit(users, user, items, item) + _context_logit(
        device, hour, position, users.activity[user]
    )
    click_intercept = _intercept_for_rate(click_terms, TARGET_CTR, np.ones(CALIBRATION_ROWS))
    ctr = _sigmoid(click_intercept + click_terms)  # conversion is calibrated among expected clicks
    conversion_terms = _conversion_terms(users, user, items, item)
    return click_intercept, _intercept_for_rate(conversion_terms, TARGET_CVR_GIVEN_CLICK, ctr)


class _BehaviourLog:
    """One user's click/cart/purchase item ids, most recent first, capped in length."""

    __slots__ = ("clicks", "carts", "purchases")

    def __init__(self, clicks: list[str], carts: list[str], purchases: list[str], length: int):
        self.clicks = collections.deque(clicks, maxlen=length)
        self.carts = collections.deque(carts, maxlen=length)
        self.purchases = collections.deque(purchases, maxlen=length)

    def snapshot(self) -> tuple[str, str, str]:
        return "|".join(self.clicks), "|".join(self.carts), "|".join(self.purchases)

    def record(self, item_id: str, clicked: bool, carted: bool, purchased: bool) -> None:
        if clicked:
            self.clicks.appendleft(item_id)
        if carted:
            self.carts.appendleft(item_id)
        if purchased:
            self.purchases.appendleft(item_id)


class _FeedSimulator:
    """Holds the catalogue and the state that carries across blocks: clock and histories."""

    def __init__(self, spec: SyntheticSpec):
        rng = np.random.default_rng([spec.seed, 0])
        centroids = rng.standard_normal((NUM_CATEGORIES, LATENT_DIM))
        self.spec = spec
        self.users = _make_users(rng, spec.user_count, centroids)
        self.items = _make_items(rng, spec.item_count, spec.item_popularity_exponent, centroids)
        self.user_ids = _labels("u", spec.user_count)
        self.item_ids = _labels("i", spec.item_count)
        self.click_intercept, self.conversion_intercept = _calibrated_intercepts(rng, self.users, self.items)
        self.logs: dict[int, _BehaviourLog] = {}
        self.clock = START_TIMESTAMP - 1

    def block(self, index: int, first_row: int, rows: int) -> pd.DataFrame:
        """The rows [first_row, first_row + rows), drawn from the block's own random stream."""
        rng = np.random.default_rng([self.spec.seed, 1, index])
        user = _sample(self.users.sampling_cdf, rng, rows)
        item = _sample(self.items.popularity_cdf, rng, rows)
        self._prefill_new_users(user, rng)
        context = self._draw_context(rng, rows)
        outcome = self._draw_outcomes(rng, user, item, context)
        histories = self._replay_histories(user, item, outcome)
        return self._frame(first_row, user, item, context, outcome, histories)

    def _draw_context(self, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
        """Timestamps (strictly increasing across blocks), hour, device and page slot."""
        mean_gap = LOG_SPAN_SECONDS / self.spec.rows
        timestamp = self.clock + np.cumsum(1 + np.floor(rng.exponential(mean_gap, rows)).astype(np.int64))
        self.clock = int(timestamp[-1])
        device, position = _draw_slots(rng, rows)
        hour = (timestamp // 3600) % 24
        return {"timestamp": timestamp, "hour": hour, "device": device, "position": position}

    def _draw_outcomes(self, rng, user, item, context) -> dict[str, np.ndarray]:
        """True probabilities and the labels drawn from them, including cart and dwell."""
        users, items = self.users, self.items
        click_logit = self.click_intercept + _taste_logit(users, user, items, item) + _context_logit(
            context["device"], context["hour"], context["position"], users.activity[user]
        )
        ctr = _sigmoid(click_logit)
        cvr = _sigmoid(self.conversion_intercept + _conversion_terms(users, user, items, item))
        click = rng.random(len(user)) < ctr
        conversion = click & (rng.random(len(user)) < cvr)
        cart_probability = np.where(conversion, CART_PROBABILITY_IF_CONVERTED, CART_PROBABILITY_OTHERWISE)
        cart = click & (rng.random(len(user)) < cart_probability)
        dwell_log_mean = (
            DWELL_BASE_LOG_SECONDS
            + DWELL_QUALITY_WEIGHT * items.quality[item]
            + DWELL_CATEGORY_WEIGHT * _category_preference(users, user, items, item)
        )
        dwell = np.maximum(np.round(rng.lognormal(dwell_log_mean, DWELL_SIGMA), 2), 0.01)
        return {"ctr": ctr, "cvr": cvr, "click": click, "conversion": conversion,
                "cart": cart, "dwell": np.where(click, dwell, 0.0)}

    def _prefill_new_users(self, user: np.ndarray, rng: np.random.Generator) -> None:
        """Gives first-seen users a short past drawn from their true tastes."""
        new = np.array([u for u in dict.fromkeys(user.tolist()) if u not in self.logs], dtype=np.int64)
        if len(new) == 0:
            return
        candidates = _sample(self.items.popularity_cdf, rng, (len(new), PREFILL_CANDIDATES))
        taste = _taste_logit(self.users, new[:, None], self.items, candidates)
        gumbel = -np.log(-np.log(rng.random(candidates.shape)))
        ranked = np.take_along_axis(candidates, np.argsort(-(taste + gumbel), axis=1), axis=1)
        wanted = np.minimum(rng.poisson(PREFILL_MEAN_CLICKS, len(new)), self.spec.history_length)
        carted = rng.random(candidates.shape) < PREFILL_CART_PROBABILITY
        bought = carted & (rng.random(candidates.shape) < PREFILL_PURCHASE_PROBABILITY)
        for row, (u, n) in enumerate(zip(new.tolist(), wanted.tolist())):
            clicks = list(dict.fromkeys(ranked[row].tolist()))[:n]
            self.logs[u] = _BehaviourLog(
                [self.item_ids[i] for i in clicks],
                [self.item_ids[i] for k, i in enumerate(clicks) if carted[row, k]],
                [self.item_ids[i] for k, i in enumerate(clicks) if bought[row, k]],
                self.spec.history_length,
            )

    def _replay_histories(self, user, item, outcome) -> tuple[list[str], list[str], list[str]]:
        """Each row's histories as seen before it, then updated with its outcome."""
        clicks, carts, purchases = [], [], []
        rows = zip(user.tolist(), self.item_ids[item].tolist(), outcome["click"].tolist(),
                   outcome["cart"].tolist(), outcome["conversion"].tolist())
        for u, item_id, clicked, carted, purchased in rows:
            log = self.logs[u]
            click_items, cart_items, purchase_items = log.snapshot()
            clicks.append(click_items)
            carts.append(cart_items)
            purchases.append(purchase_items)
            log.record(item_id, clicked, carted, purchased)
        return clicks, carts, purchases

    def _frame(self, first_row, user, item, context, outcome, histories) -> pd.DataFrame:
        """Assembles the block's columns in COLUMNS order."""
        users, items = self.users, self.items
        columns = {
            "impression_id": [f"imp{row:09d}" for row in range(first_row, first_row + len(user))],
            "timestamp": context["timestamp"],
            "user_id": self.user_ids[user],
            "user_age": users.age[user],
            "user_gender": GENDERS[users.gender[user]],
            "user_city": CITY_LABELS[users.city[user]],
            "user_activity": users.activity[user],
            "item_id": self.item_ids[item],
            "item_category": CATEGORY_LABELS[items.category[item]],
            "item_brand": BRAND_LABELS[items.brand[item]],
            "item_price": items.price[item],
            "item_tags": items.tags[item],
            "device": DEVICES[context["device"]],
            "hour": context["hour"],
            "position": context["position"],
            "hist_click_items": histories[0],
            "hist_cart_items": histories[1],
            "hist_purchase_items": histories[2],
            "click": outcome["click"].astype(np.int64),
            "conversion": outcome["conversion"].astype(np.int64),
            "dwell_time": outcome["dwell"],
            "true_ctr": outcome["ctr"],
            "true_cvr": outcome["cvr"],
            "true_ctcvr": outcome["ctr"] * outcome["cvr"],
        }
        return pd.DataFrame(columns, columns=list(COLUMNS))


def _blocks(spec: SyntheticSpec) -> Iterator[pd.DataFrame]:
    """All rows as consecutive BLOCK_ROWS-sized frames (the last may be shorter)."""
    simulator = _FeedSimulator(spec)
    for index, first_row in enumerate(range(0, spec.rows, BLOCK_ROWS)):
        yield simulator.block(index, first_row, min(BLOCK_ROWS, spec.rows - first_row))


def iter_chunks(spec: SyntheticSpec) -> Iterator[pd.DataFrame]:
    """Yields the log in impression order as frames of at most spec.chunk_rows rows."""
    buffered: pd.DataFrame | None = None
    for block in _blocks(spec):
        buffered = block if buffered is None else pd.concat([buffered, block], ignore_index=True)
        while len(buffered) >= spec.chunk_rows:
            yield buffered.iloc[: spec.chunk_rows].reset_index(drop=True)
            buffered = buffered.iloc[spec.chunk_rows :]
    if len(buffered):
        yield buffered.reset_index(drop=True)


@contextlib.contextmanager
def _csv_text(path: str) -> Iterator[io.TextIOBase]:
    """A UTF-8 text stream into path, gzipped when it ends in .gz.

    The gzip header gets no file name and a zero mtime so equal specs give equal bytes.
    """
    with open(path, "wb") as raw:
        packed = raw
        if path.endswith(".gz"):
            packed = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0)
        with packed, io.TextIOWrapper(packed, encoding="utf-8", newline="") as text:
            yield text


def _write_csv(chunks: Iterator[pd.DataFrame], text: io.TextIOBase, on_chunk: Callable[[int], None]) -> None:
    """CSV with one header row, appending chunk after chunk."""
    for number, chunk in enumerate(chunks):
        chunk.to_csv(text, header=number == 0, index=False)
        on_chunk(len(chunk))


def _write_parquet(chunks: Iterator[pd.DataFrame], path: str, on_chunk: Callable[[int], None]) -> None:
    """Parquet with one row group per chunk, schema fixed by the first chunk."""
    writer = None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=len(chunk))
            on_chunk(len(chunk))
    finally:
        if writer is not None:
            writer.close()


def write(spec: SyntheticSpec, path: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Writes the log to .csv, .csv.gz or .parquet and returns the number of rows written.

    progress(rows_done, rows_total), if given, is called after each chunk.
    """
    if not path.endswith((".csv", ".csv.gz", ".parquet")):
        raise ValueError(f"unsupported output format for {path!r}: use .csv, .csv.gz or .parquet")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    written = 0

    def on_chunk(rows: int) -> None:
        nonlocal written
        written += rows
        if progress is not None:
            progress(written, spec.rows)

    if path.endswith(".parquet"):
        _write_parquet(iter_chunks(spec), path, on_chunk)
    else:
        with _csv_text(path) as text:
            _write_csv(iter_chunks(spec), text, on_chunk)
    return written
