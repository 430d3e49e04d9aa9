"""Melody and audio-prompt files: read, checked and converted at plan time, shipped once per sweep.

A variant's `melody` or `audio_prompt` names an audio file. It is read here, before anything is
written, with soundfile (WAV, FLAC, OGG, ...), resampled to MusicGen's 32 kHz with soxr (its
high-quality setting) when it has another rate, and kept as a float32 WAV with its own channels
(1 or 2: the engine mixes down or duplicates for the model, `engine.inputs`). That WAV's SHA-256
names it everywhere: in the job id (an edited file is a new clip, an unchanged one is skipped),
in the store (`StoreKeys.input_audio`, shipped once however many jobs use it), and for the worker,
which checks the hash of what it reads.

Bad input fails here with one line naming the variant, the key and the file: a missing or
unreadable file, one that is not audio, one with a rate or channel count that cannot be converted,
an audio prompt not shorter than its clip or the model's window, a melody for a model without
melody conditioning.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicsweep.costs.continuation import WINDOW_S
from musicsweep.errors import MusicsweepError
from musicsweep.job import INPUT_KEYS, SAMPLING_RATE, InputAudio, Job
from musicsweep.layout import StoreKeys
from musicsweep.models import model_traits
from musicsweep.store.base import Store

MIN_RATE, MAX_RATE = 8000, 384000  # rates soxr converts to 32 kHz without a degenerate ratio
MAX_CHANNELS = 2


@dataclass(frozen=True)
class ConvertedAudio:
    audio: InputAudio
    wav: bytes  # float32 WAV at SAMPLING_RATE: what is shipped and hashed


# What this process read, by hash: a launch ships these bytes without reading the files again.
_READ: dict[str, bytes] = {}


def float_wav(audio: np.ndarray) -> bytes:
    """(samples, channels) as a 32-bit float WAV at SAMPLING_RATE, the same bytes for the same audio.

    Written here, not by soundfile: libsndfile adds a PEAK chunk with a timestamp to float WAVs, so
    the same audio would hash differently on every run."""
    data = np.ascontiguousarray(audio, dtype="<f4").tobytes()
    channels = audio.shape[1]
    fmt = struct.pack("<HHIIHH", 3, channels, SAMPLING_RATE, SAMPLING_RATE * channels * 4, channels * 4, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def convert(path: Path, label: str) -> ConvertedAudio:
    """Read `path` and convert it to the 32 kHz float WAV that stands for it; `label` starts each error."""
    try:
        import soundfile
        import soxr
    except ImportError as error:
        raise MusicsweepError(f"{label}: reading audio needs the worker extra ({error.name} is missing)") from None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MusicsweepError(f"{label}: cannot read {path}: {error.strerror}") from None
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as error:  # noqa: BLE001 - soundfile's errors vary by format and version
        reason = " ".join(str(error).split())
        raise MusicsweepError(f"{label}: {path} is not audio soundfile can read ({reason})") from None
    samples, channels = audio.shape
    if channels > MAX_CHANNELS:
        raise MusicsweepError(f"{label}: {path} has {channels} channels; give mono or stereo audio")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise MusicsweepError(
            f"{label}: {path} is sampled at {rate} Hz, which cannot be converted to 32 kHz "
            f"({MIN_RATE}-{MAX_RATE} Hz can)"
        )
    if rate != SAMPLING_RATE:
        audio = soxr.resample(audio, rate, SAMPLING_RATE, quality="HQ").astype("float32")
    if audio.shape[0] == 0:
        raise MusicsweepError(f"{label}: {path} holds no audio")
    wav = float_wav(audio)
    sha256 = hashlib.sha256(wav).hexdigest()
    return ConvertedAudio(InputAudio(sha256, audio.shape[0], channels, str(path)), wav)


def read_inputs(variant: dict[str, Any], base_dir: Path, where: str) -> dict[str, InputAudio]:
    """The variant's input files, read and converted; a key that is absent or None means no input."""
    inputs = {}
    for key in INPUT_KEYS:
        if variant.get(key) is None:
            continue
        text = variant[key]
        label = f"{where}: key {key!r}"
        if not isinstance(text, str | Path) or not str(text).strip():
            raise MusicsweepError(f"{label} must be a path to an audio file, got {text!r}")
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base_dir / path
        converted = convert(path, label)
        _READ[converted.audio.sha256] = converted.wav
        inputs[key] = converted.audio
    return inputs


def check_inputs(job: Job, where: str) -> None:
    """What a job asks of its inputs and model, beyond each file being good audio."""
    if job.melody is not None and not model_traits(job.model).melody:
        raise MusicsweepError(
            f"{where}: key 'melody' ({job.melody.source}): model {job.model!r} has no melody conditioning "
            "(use a melody model: tiny-melody, melody, facebook/musicgen-stereo-melody, ...)"
        )
    prompt = job.audio_prompt
    if prompt is None:
        return
    if prompt.seconds >= job.duration_s:
        raise MusicsweepError(
            f"{where}: key 'audio_prompt' ({prompt.source}) is {prompt.seconds:g} s, "
            f"not shorter than the clip ({job.duration_s:g} s, which includes it)"
        )
    if prompt.seconds >= WINDOW_S:
        raise MusicsweepError(
            f"{where}: key 'audio_prompt' ({prompt.source}) is {prompt.seconds:g} s, "
            f"not shorter than the model's {WINDOW_S:g} s window"
        )


def ship_inputs(store: Store, keys: StoreKeys, jobs: list[Job]) -> int:
    """Put each input the jobs use into the store once (content-addressed); returns how many were sent.

    Bytes this process read at plan time are sent as read; a job planned elsewhere (a relaunch from
    the specs) has its file read again, which must still hash the same.
    """
    sent = 0
    for audio in {audio.sha256: audio for job in jobs for audio in job.inputs}.values():
        key = keys.input_audio(audio.sha256)
        if store.exists(key):
            continue
        wav = _READ.get(audio.sha256)
        if wav is None:
            wav = convert(Path(audio.source), f"input {audio.source}").wav
            if hashlib.sha256(wav).hexdigest() != audio.sha256:
                raise MusicsweepError(f"input {audio.source}: changed since the sweep was planned; plan it again")
        store.put_bytes(key, wav)
        sent += 1
    return sent
