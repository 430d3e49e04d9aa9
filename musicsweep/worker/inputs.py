"""A worker's melodies and audio prompts: read from the store once each, checked by their hash.

The launcher shipped each input as a 32 kHz WAV under its SHA-256 (`sweep.inputs`); a worker reads
it, refuses bytes that do not hash to their key (a torn or altered object must not condition a
paid clip), and keeps it for every batch that uses it.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from musicsweep.engine.inputs import ClipInputs
from musicsweep.job import InputAudio, Job
from musicsweep.layout import StoreKeys
from musicsweep.store.base import Store


class InputCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.audio: dict[str, np.ndarray] = {}

    def read(self, sweep: str, audio: InputAudio) -> np.ndarray:
        """(channels, samples) float32 at 32 kHz."""
        if audio.sha256 not in self.audio:
            import soundfile

            key = StoreKeys(sweep).input_audio(audio.sha256)
            data = self.store.get_bytes(key)
            digest = hashlib.sha256(data).hexdigest()
            if digest != audio.sha256:
                raise ValueError(f"{key}: its content hashes to {digest}, not its name: refusing it")
            samples, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            self.audio[audio.sha256] = samples.T.copy()
        return self.audio[audio.sha256]

    def for_batch(self, jobs: list[Job]) -> ClipInputs | None:
        """The batch's inputs for `MusicEngine.generate` (its jobs share `Job.group_key`), or None."""
        first = jobs[0]
        if not first.inputs:
            return None
        melodies = [self.read(job.sweep, job.melody) for job in jobs] if first.melody else None
        prompts = [self.read(job.sweep, job.audio_prompt) for job in jobs] if first.audio_prompt else None
        return ClipInputs(melodies, prompts, first.prompt_in_output)
