"""One listener's blind A/B session: hands out pairs behind opaque URLs and records the choices.

Nothing the browser receives before a choice names a value of the axis or a clip: each side of a
pair gets a fresh random URL, mapped to its WAV only here. The least-judged pairs come first, each
in a random A/B order, so short sessions still spread over the whole axis.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from musicsweep.curate.ab import choice_record, read_choices, save_choice
from musicsweep.errors import MusicsweepError
from musicsweep.report.grid import format_value
from musicsweep.report.model import Clip

MAX_OPEN = 256  # pairs and blind URLs kept at once; older ones are forgotten


def pair_key(a: Clip, b: Clip) -> frozenset[str]:
    return frozenset((a.job_id, b.job_id))


class BlindSession:
    def __init__(self, sweep_root: Path, axis: str, pairs: list[tuple[Clip, Clip]], rater: str) -> None:
        self.sweep_root, self.axis, self.pairs, self.rater = sweep_root, axis, pairs, rater
        self.judged: Counter[frozenset[str]] = Counter()
        records, _problems = read_choices(sweep_root)
        for record in records:
            if record["axis"] == axis:
                self.judged[frozenset((record["a"].get("clip"), record["b"].get("clip")))] += 1
        self.choices = 0
        self._open: OrderedDict[str, tuple[Clip, Clip]] = OrderedDict()
        self._audio: OrderedDict[str, Path] = OrderedDict()
        self._random = random.SystemRandom()
        self._lock = threading.Lock()

    def next_pair(self, audio_dir: Path) -> dict[str, Any]:
        with self._lock:
            fewest = min(self.judged[pair_key(*pair)] for pair in self.pairs)
            candidates = [pair for pair in self.pairs if self.judged[pair_key(*pair)] == fewest]
            a, b = self._random.sample(self._random.choice(candidates), 2)
            pair_id = secrets.token_hex(16)
            self._remember(self._open, pair_id, (a, b))
            urls = []
            for clip in (a, b):
                opaque = secrets.token_hex(16)
                self._remember(self._audio, opaque, audio_dir / clip.output_name)
                urls.append(f"blind/{opaque}")
            return {"pair": pair_id, "a": urls[0], "b": urls[1], "prompt": a.prompt, "choices": self.choices}

    def choose(self, pair_id: Any, choice: Any) -> dict[str, Any]:
        """Record the choice for a pair handed out earlier; returns what the choice reveals."""
        with self._lock:
            pair = self._open.pop(pair_id, None) if isinstance(pair_id, str) else None
            if pair is None:
                raise MusicsweepError("unknown or already judged pair")
            a, b = pair
            try:
                record = choice_record(self.axis, a, b, choice, self.rater)
            except MusicsweepError:
                self._open[pair_id] = pair  # a bad choice leaves the pair open for a good one
                raise
            save_choice(self.sweep_root, record)
            self.judged[pair_key(a, b)] += 1
            self.choices += 1
            return {
                "axis": self.axis,
                "a": format_value(a.axes[self.axis]),
                "b": format_value(b.axes[self.axis]),
                "choice": choice,
                "choices": self.choices,
            }

    def audio(self, opaque: str) -> Path | None:
        with self._lock:
            return self._audio.get(opaque)

    @staticmethod
    def _remember(table: OrderedDict, key: str, value: Any) -> None:
        table[key] = value
        while len(table) > MAX_OPEN:
            table.popitem(last=False)
