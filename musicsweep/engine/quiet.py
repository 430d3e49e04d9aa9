"""Library log noise that every model load would print: dropped once, at load time."""

from __future__ import annotations

import logging

# Real MusicGen checkpoints (and the tiny model) use 2048, one past the codebook, as pad/bos/start
# token; transformers' generic config check warns about it on every load. The warning is noise.
_TOKEN_ID_WARNING = "must be `None` or an integer within the vocabulary"
_CONFIG_LOGGERS = ("transformers.configuration_utils", "transformers.models.musicgen.configuration_musicgen")


class _DropTokenIdWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TOKEN_ID_WARNING not in record.getMessage()


def silence_token_id_warnings() -> None:
    for name in _CONFIG_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTokenIdWarning) for f in logger.filters):
            logger.addFilter(_DropTokenIdWarning())
