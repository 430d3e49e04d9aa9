"""The estimate before a launch, made of the same parts as the bill.

Each worker is paid for boot (cloud machines only: provider start to worker start), setup (worker
start to first model load: cache-ahead), model load, generation, upload (store writes per clip)
and idle (the rest). Each worker's own shard is priced first (`Estimate.shards`); since workers
take clips no live worker holds, each is then priced for its expected share of the sweep
(`Estimate.workers`: a fast worker takes more, a slow or late one less), and the paid estimate is
each worker's share x its hourly rate. Every figure comes,
in this order, from `estimate` in musicsweep.yaml (or a backend's own setting), from the closest
calibration (`costs/calibration.py`), or from a default guess, and says which. Generation is
priced in continuation work (`costs/continuation.py`) per batch, so it scales with clip length as
the engine's windows do, and with batch size as measured (`BATCH_EXPONENT` where not measured).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from statistics import median
from typing import TYPE_CHECKING, Any

from musicsweep.billing import Billing, EstimateFigures
from musicsweep.costs.calibration import Calibration, CalibrationKey, load_calibration
from musicsweep.costs.continuation import work_s

if TYPE_CHECKING:
    from musicsweep.backends.base import Shard
    from musicsweep.config import Config
    from musicsweep.store.base import Store

PARTS = ("boot", "setup", "model_load", "generation", "upload", "idle")
BUSY_PARTS = ("generation", "upload")  # the parts that grow with the clips a worker makes
GUESS = "no history: default guess"
GUESS_RANGE = (0.5, 2.0)  # a guess may be off by 2x either way
SPREAD = 0.3  # +-30% around one sweep's figure, +-15% around two, ...
MIN_HISTORY = 3  # fewer sweeps behind a figure: the plan shows the estimate's range
BATCH_EXPONENT = 0.5  # where unmeasured, a batch of b takes b**0.5 x one clip's time (CPU: 8 -> ~3x)
AUTO_BATCH = 8  # `engine.batch_size: auto` on CPU, when history has no larger batch

# Audio seconds per wall second at batch 1, clips <= 30 s, one worker: a conservative guess.
DEFAULT_THROUGHPUT = {"tiny": 8.0, "small": 1.0, "medium": 0.4, "large": 0.2, "melody": 0.35}
DEFAULT_MODEL_LOAD_S = {"tiny": 3.0, "small": 20.0, "medium": 45.0, "large": 90.0, "melody": 45.0}
DEFAULT_SETUP_S, DEFAULT_UPLOAD_S, DEFAULT_IDLE_S = 1.0, 0.05, 1.0
DEFAULT_BOOT_S = 300.0  # a cloud machine booting and installing before its worker starts


def model_family(model: str) -> str:
    """`facebook/musicgen-small` prices as `small`."""
    return model.rsplit("-", 1)[-1] if "/" in model else model


@dataclass(frozen=True)
class Figure:
    """Seconds, where they came from, and the range (multipliers) they may be off by."""

    seconds: float
    source: str
    low: float = 1.0
    high: float = 1.0
    history: int | None = None  # sweeps behind it: None for a user's figure, 0 for a guess

    @classmethod
    def guess(cls, seconds: float) -> Figure:
        return cls(seconds, GUESS, *GUESS_RANGE, history=0)

    @classmethod
    def measured(cls, values: Sequence[float], source: str) -> Figure:
        center = median(values)
        margin = SPREAD / len(values)
        if center <= 0:
            return cls(0.0, source, 1.0, 1.0, len(values))
        return cls(
            center, source, min(values) / center * (1 - margin), max(values) / center * (1 + margin), len(values)
        )


@dataclass
class WorkerEstimate:
    worker_id: int
    host: str
    machine: str
    hourly_cost_usd: float
    clips: int
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    low_s: float = 0.0
    high_s: float = 0.0
    longest_batch_s: float = 0.0  # its longest batch, uploads included: the stall watchdog's yardstick
    work_s: float = 0.0  # its clips' continuation work (`costs/continuation.py`): what its speed is measured in
    job_s: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, figure: Figure, times: float = 1.0) -> None:
        self.parts[part] += figure.seconds * times
        self.low_s += figure.seconds * figure.low * times
        self.high_s += figure.seconds * figure.high * times

    @property
    def total_s(self) -> float:
        return sum(self.parts.values())

    @property
    def start_s(self) -> float:
        """Seconds before it generates its first clip: boot, setup, model load."""
        return self.parts["boot"] + self.parts["setup"] + self.parts["model_load"]

    @property
    def speed(self) -> float:
        """Work seconds it gets through per wall second while generating (uploads included)."""
        busy_s = self.parts["generation"] + self.parts["upload"]
        return self.work_s / busy_s if busy_s > 0 else 0.0

    @property
    def cost_usd(self) -> float:
        return self.total_s * self.hourly_cost_usd / 3600.0

    def sharing(self, work: float, clips: int) -> WorkerEstimate:
        """This worker when the fleet's sharing leaves it `work` (continuation work) in about
        `clips` clips: generation and uploads scale with the work, its start and idle stay."""
        scale = work / self.work_s if self.work_s > 0 else 0.0
        parts = {part: seconds * scale if part in BUSY_PARTS else seconds for part, seconds in self.parts.items()}
        ratio = sum(parts.values()) / self.total_s if self.total_s > 0 else 1.0
        return replace(
            self, clips=clips, parts=parts, low_s=self.low_s * ratio, high_s=self.high_s * ratio, work_s=work, job_s={}
        )

    def to_dict(self) -> dict[str, Any]:
        """Without `job_s` (per clip, never copied: `asdict` would copy 100,000 entries to drop them)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in WORKER_FIELDS}


WORKER_FIELDS = tuple(item.name for item in fields(WorkerEstimate) if item.name != "job_s")


@dataclass
class Estimate:
    shards: list[WorkerEstimate]  # each worker's own shard, as launched
    sources: dict[str, str]  # figure ("generation (tiny, batch 4)") -> where it came from
    history: int  # fewest sweeps behind any figure from history or a guess (0: some figure is a guess)

    @cached_property
    def workers(self) -> list[WorkerEstimate]:
        """What each worker is expected to make and be paid for: its share of the sweep when the
        fleet sharing it ends sooner than fixed shards would (a worker in the fleet works until the
        shared finish, one that would start after it only starts), else its own shard."""
        shared = shared_finish_s(self.shards)
        if shared is None or self.shard_wall_s <= shared + self.last_batch_s:
            return self.shards
        taken = [worker.speed * max(0.0, shared - worker.start_s) for worker in self.shards]
        clips = apportion(sum(worker.clips for worker in self.shards), taken)
        return [worker.sharing(work, count) for worker, work, count in zip(self.shards, taken, clips, strict=True)]

    @property
    def machine_s(self) -> float:
        return sum(worker.total_s for worker in self.workers)

    @property
    def shard_wall_s(self) -> float:
        """When the slowest worker would finish its own shard: the sweep's end under fixed shards."""
        return max((worker.total_s for worker in self.shards), default=0.0)

    @property
    def last_batch_s(self) -> float:
        """The longest batch of any worker: the last batches cannot be split between workers."""
        return max((worker.longest_batch_s for worker in self.shards), default=0.0)

    @property
    def wall_s(self) -> float:
        """Workers share the sweep (a worker done with its shard takes clips no live worker holds), so
        it ends when the fleet's combined speed has done all the work, plus one batch, since the
        last batches cannot be split; never later than fixed shards would end it."""
        shared = shared_finish_s(self.shards)
        if shared is None:
            return self.shard_wall_s
        return min(self.shard_wall_s, shared + self.last_batch_s)

    @property
    def paid_usd(self) -> float:
        return sum(worker.cost_usd for worker in self.workers)

    @property
    def range_s(self) -> tuple[float, float]:
        return sum(w.low_s for w in self.workers), sum(w.high_s for w in self.workers)

    @property
    def range_usd(self) -> tuple[float, float]:
        low = sum(w.low_s * w.hourly_cost_usd for w in self.workers) / 3600.0
        return low, sum(w.high_s * w.hourly_cost_usd for w in self.workers) / 3600.0

    @property
    def thin(self) -> bool:
        return self.history < MIN_HISTORY

    @property
    def job_s(self) -> dict[str, float]:
        return {job_id: s for worker in self.shards for job_id, s in worker.job_s.items()}

    def part_totals(self) -> dict[str, float]:
        return {part: sum(worker.parts[part] for worker in self.workers) for part in PARTS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine_s": self.machine_s,
            "wall_s": self.wall_s,
            "shard_wall_s": self.shard_wall_s,
            "paid_usd": self.paid_usd,
            "range_s": list(self.range_s),
            "range_usd": list(self.range_usd),
            "history": self.history,
            "parts": self.part_totals(),
            "sources": self.sources,
            "workers": [worker.to_dict() for worker in self.workers],
        }


def apportion(count: int, weights: Sequence[float]) -> list[int]:
    """`count` split in proportion to `weights`, in whole numbers that add up to it (largest
    remainders first): each worker's expected clips from its share of the work."""
    total = sum(weights)
    if total <= 0:
        return [0] * len(weights)
    exact = [count * weight / total for weight in weights]
    whole = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda index: whole[index] - exact[index])
    for index in by_remainder[: count - sum(whole)]:
        whole[index] += 1
    return whole


def shared_finish_s(workers: Sequence[WorkerEstimate]) -> float | None:
    """When workers that each start generating at `start_s`, at `speed`, have done all their work
    together: the T where sum(speed * max(0, T - start_s)) is the total work. A worker that would
    start after T takes no part. None when no worker generates."""
    total = sum(worker.work_s for worker in workers)
    starting = sorted((worker.start_s, worker.speed) for worker in workers if worker.speed > 0)
    if not starting or total <= 0:
        return None
    finish, speed, weighted = math.inf, 0.0, 0.0
    for start, worker_speed in starting:
        if start >= finish:
            break
        speed, weighted = speed + worker_speed, weighted + worker_speed * start
        finish = (total + weighted) / speed
    return finish


class Estimator:
    """Prices shards for one backend from the config's overrides, the calibration, or a guess."""

    def __init__(
        self,
        config: Config,
        backend: str,
        boots: bool,
        calibration: Calibration | None = None,
        figures: EstimateFigures | None = None,
    ) -> None:
        self.config = config
        self.settings = config.estimate
        self.backend = backend
        self.boots = boots
        self.calibration = calibration or Calibration()
        self.figures = figures or EstimateFigures()
        self.sources: dict[tuple[str, str], str] = {}  # (machine, figure) -> source
        self.history: list[int] = []
        self.machine = ""

    @classmethod
    def load(cls, config: Config, backend: str, boots: bool, store: Store | None = None, **kwargs: Any) -> Estimator:
        """With the user's history, merged with the store's when `estimate.share` is set."""
        settings = config.estimate
        calibration = load_calibration(store=store if settings.share else None) if settings.calibration else None
        return cls(config, backend, boots, calibration, **kwargs)

    def estimate(self, shards: Sequence[Shard], machine_of: Callable[[Shard], str]) -> Estimate:
        self.sources, self.history = {}, []
        workers = [self.worker(shard, machine_of(shard)) for shard in shards]
        several = len({worker.machine for worker in workers}) > 1  # then each figure names its machine
        sources = {f"{label} on {machine}" if several else label: s for (machine, label), s in self.sources.items()}
        return Estimate(workers, sources, min(self.history, default=MIN_HISTORY))

    # --- one worker ------------------------------------------------------------------------------

    def worker(self, shard: Shard, machine: str) -> WorkerEstimate:
        estimate = WorkerEstimate(shard.worker_id, shard.host, machine, shard.hourly_cost_usd, len(shard.jobs))
        self.machine = machine
        models = list(dict.fromkeys(job.model for job in shard.jobs))
        keys = {model: self.key(machine, model) for model in models}
        first = keys[models[0]] if models else None
        if self.boots:
            estimate.add("boot", self.boot(first))
        estimate.add("setup", self.scalar("setup", first, DEFAULT_SETUP_S))
        for model in models:
            estimate.add("model_load", self.model_load(model, keys[model]))
        upload = self.scalar("upload", first, DEFAULT_UPLOAD_S)
        estimate.add("upload", upload, len(shard.jobs))
        estimate.add("idle", self.scalar("idle", first, DEFAULT_IDLE_S))
        groups: dict[tuple, list] = {}
        for job in shard.jobs:
            groups.setdefault(job.group_key, []).append(job)
        for (model, params, duration_s, *_inputs), jobs in groups.items():
            size = self.batch_size(keys[model])
            work = work_s(duration_s, params.extend_stride_s)
            estimate.work_s += work * len(jobs)
            for start in range(0, len(jobs), size):
                batch = jobs[start : start + size]
                per_batch = self.batch_s_per_work(model, len(batch), keys[model])
                estimate.add("generation", per_batch, work)
                batch_s = per_batch.seconds * work + upload.seconds * len(batch)
                estimate.longest_batch_s = max(estimate.longest_batch_s, batch_s)
                estimate.job_s |= {job.job_id: per_batch.seconds * work / len(batch) + upload.seconds for job in batch}
        return estimate

    def key(self, machine: str, model: str) -> CalibrationKey | None:
        if not self.settings.calibration:
            return None
        engine = self.config.engine
        return self.calibration.closest(self.backend, machine, model, engine.dtype, engine.device)

    def note(self, label: str, figure: Figure) -> Figure:
        self.sources[(self.machine, label)] = figure.source
        if figure.history is not None:
            self.history.append(figure.history)
        return figure

    def from_history(
        self, label: str, key: CalibrationKey | None, values: list[float], detail: str = ""
    ) -> Figure | None:
        if key is None or not values:
            return None
        count = len(values)
        source = f"calibrated from {count} sweep{'s' if count > 1 else ''} on {key.describe()}{detail}"
        return self.note(label, Figure.measured(values, source))

    def samples(self, key: CalibrationKey | None, name: str) -> list[float]:
        samples = self.calibration.entries.get(key, []) if key is not None else []
        return [float(s[name]) for s in samples if s.get(name) is not None]

    def scalar(self, part: str, key: CalibrationKey | None, default: float) -> Figure:
        """A per-worker (setup, idle) or per-clip (upload) figure."""
        configured = getattr(self.settings, f"{part}_s")
        if configured is not None:
            return self.note(part, Figure(configured, f"musicsweep.yaml estimate.{part}_s"))
        name = f"{part}_s"
        return self.from_history(part, key, self.samples(key, name)) or self.note(part, Figure.guess(default))

    def boot(self, key: CalibrationKey | None) -> Figure:
        if self.settings.boot_s is not None:
            return self.note("boot", Figure(self.settings.boot_s, "musicsweep.yaml estimate.boot_s"))
        if self.figures.boot is not None:
            seconds, where = self.figures.boot
            return self.note("boot", Figure(seconds, f"musicsweep.yaml {where}"))
        return self.from_history("boot", key, self.samples(key, "boot_s")) or self.note(
            "boot", Figure.guess(DEFAULT_BOOT_S)
        )

    def model_load(self, model: str, key: CalibrationKey | None) -> Figure:
        label = f"model load ({model})"
        configured = self.settings.model_load_s.get(model, self.settings.model_load_s.get(model_family(model)))
        if configured is not None:
            return self.note(label, Figure(configured, f"musicsweep.yaml estimate.model_load_s.{model}"))
        default = DEFAULT_MODEL_LOAD_S.get(model_family(model), 60.0)
        return self.from_history(label, key, self.samples(key, "model_load_s")) or self.note(
            label, Figure.guess(default)
        )

    def batch_size(self, key: CalibrationKey | None) -> int:
        configured = self.config.engine.batch_size
        if isinstance(configured, int):
            return configured
        samples = self.calibration.entries.get(key, []) if key is not None else []
        chosen = [int(s["batch_size"]) for s in samples if s.get("batch_size")]
        return chosen[-1] if chosen else AUTO_BATCH  # what the newest sweep's workers picked

    def batch_s_per_work(self, model: str, size: int, key: CalibrationKey | None) -> Figure:
        """Wall seconds per work second of a batch of `size` clips."""
        label = f"generation ({model}, batch {size})"
        rate = self.settings.throughput.get(model, self.settings.throughput.get(model_family(model)))
        where = f"estimate.throughput.{model}"
        if rate is None and self.figures.throughput is not None:
            rate, where = self.figures.throughput
        if rate is not None:
            return self.note(label, Figure(size / rate, f"musicsweep.yaml {where}"))
        values, scaled = [], set()
        for sample in self.calibration.entries.get(key, []) if key is not None else []:
            rates = {int(s): b["wall_s"] / b["work_s"] for s, b in sample.get("batches", {}).items() if b["work_s"] > 0}
            if rates:
                nearest = min(rates, key=lambda s: (abs(s - size), -s))
                values.append(rates[nearest] * (size / nearest) ** BATCH_EXPONENT)
                if nearest != size:
                    scaled.add(nearest)
        detail = f" (scaled from batch {', '.join(map(str, sorted(scaled)))})" if scaled else ""
        default = size**BATCH_EXPONENT / DEFAULT_THROUGHPUT.get(model_family(model), 0.5)
        return self.from_history(label, key, values, detail) or self.note(label, Figure.guess(default))


def estimate_for(
    config: Config, backend: str, billing: Billing, shards: Sequence[Shard], store: Store | None = None
) -> Estimate:
    """The estimate of `shards` on `backend`, with the user's history (and the team's, if shared)."""
    figures = billing.estimate_figures()
    estimator = Estimator.load(config, backend, billing.boots_machines, store, figures=figures)
    return estimator.estimate(shards, lambda shard: billing.machine_kind(shard.host))
