"""Is a WAV whole? A clip counts as present only if its bytes match its own header and the job.

A server on a full disk (or an interrupted copy) can keep the first part of an object under the
full key. Such a file still starts with a valid RIFF header that declares the full size, so
comparing the object's size with its header, and the header's frame count with the job's
duration, tells a whole clip from a partial one without reading the audio.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from musicsweep.store.base import ObjectInfo, Store

HEADER_BYTES = 4096  # soundfile's PCM WAV header is 44 bytes; room for extra chunks before `data`
SAMPLING_RATE = 32000  # every MusicGen model (EnCodec 32 kHz)


@dataclass(frozen=True)
class WavHeader:
    declared_size: int  # the whole file's size as the RIFF header says it
    sampling_rate: int
    channels: int
    frames: int


def parse_wav_header(data: bytes) -> WavHeader | None:
    """The RIFF/fmt/data facts of a WAV's first bytes, or None when they are not a PCM WAV header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    declared = struct.unpack_from("<I", data, 4)[0] + 8
    offset, rate, channels, block = 12, 0, 0, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt " and offset + 24 <= len(data):
            channels, rate = struct.unpack_from("<HI", data, offset + 10)
            block = struct.unpack_from("<H", data, offset + 20)[0]
        if chunk == b"data":
            if not block:
                return None
            return WavHeader(declared, rate, channels, size // block)
        offset += 8 + size + (size & 1)
    return None


def expected_frames(duration_s: float, sampling_rate: int = SAMPLING_RATE) -> int:
    """The engine trims or pads every clip to exactly this many samples."""
    return int(round(duration_s * sampling_rate))


def expected_wav_size(duration_s: float, channels: int = 1) -> int:
    """Bytes of the 16-bit WAV the worker writes for `duration_s` (a 44-byte header)."""
    return 44 + 2 * channels * expected_frames(duration_s)


def wav_problem(header_bytes: bytes, size: int, duration_s: float, channels: int = 1) -> str | None:
    """Why a stored WAV is not the whole clip the job asked for, or None when it is."""
    header = parse_wav_header(header_bytes)
    if header is None:
        return "no WAV header"
    if header.declared_size != size:
        return f"{size} bytes, but its header declares {header.declared_size}"
    wanted = expected_frames(duration_s, header.sampling_rate)
    if header.sampling_rate != SAMPLING_RATE or header.channels != channels or header.frames != wanted:
        got = f"{header.frames} frames at {header.sampling_rate} Hz x {header.channels} ch"
        return f"{got}, expected {wanted} frames at {SAMPLING_RATE} Hz {'mono' if channels == 1 else 'stereo'}"
    return None


def local_wav_problem(path: Path) -> str | None:
    """Why a pulled WAV is not whole by its own header ("not pulled" when absent), or None."""
    try:
        with open(path, "rb") as handle:
            header = parse_wav_header(handle.read(HEADER_BYTES))
        size = path.stat().st_size
    except FileNotFoundError:
        return "not pulled"
    if header is None:
        return "no WAV header"
    return None if header.declared_size == size else f"{size} bytes, but its header declares {header.declared_size}"


def stored_wav_problem(store: Store, key: str, duration_s: float, channels: int = 1) -> str | None:
    """`wav_problem` of an object in the store; "missing" when there is none."""
    info = store.info(key)
    if info is None:
        return "missing"
    return wav_problem(store.get_range(key, 0, HEADER_BYTES), info.size, duration_s, channels)


def file_md5(path: Path, part_size: int | None = None) -> tuple[str, list[bytes]]:
    """Hex MD5 of the whole file, and the raw MD5 of each `part_size` piece (for multipart ETags)."""
    whole, parts = hashlib.md5(usedforsecurity=False), []
    with open(path, "rb") as handle:
        while chunk := handle.read(part_size or (1 << 20)):
            whole.update(chunk)
            if part_size:
                parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return whole.hexdigest(), parts


def content_md5(data: bytes) -> str:
    """The `Content-MD5` header value: base64 of the raw digest, so the server refuses a torn body."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def etag_matches(path: Path, info: ObjectInfo, part_size: int) -> bool:
    """Size, then the ETag: a plain MD5, or a multipart `md5(part md5s)-N` for `part_size` parts."""
    if Path(path).stat().st_size != info.size:
        return False
    whole, parts = file_md5(path, part_size if "-" in info.etag else None)
    if "-" not in info.etag:
        return len(info.etag) != 32 or whole == info.etag  # not an MD5 ETag (some servers): size must do
    combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(parts)}" == info.etag
