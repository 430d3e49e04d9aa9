"""MusicGen generation: model loading, batched clips and long-form continuation.

- `loading`: the built-in tiny model or `from_pretrained`; device and dtype choice.
- `cacheahead`: fetch every model once before the first clip, then run with the hub offline.
- `generate`: `MusicEngine.generate`, exact-length clips. Reproducibility: a seed reproduces its WAV
  in any batch and after a resume (see that module's docstring).
- `streams`: each clip's own random stream; `invariance`: batch-invariant logits on CPU.
- `longform`: clips over 30 s by code-level continuation; the `hf` token loop (transformers'
  `generate`, one call per window).
- `token_loop`: the `fast` token loop (the default): musicsweep's own, equal to `generate`'s codes;
  `transformer` is MusicGen's transformer over a static KV cache, `steps` the eager, static-shape
  and CUDA-graph step runners.
- `codec`: the audio codec, codes to audio in spans (`SpanCodec`), once per clip.
- `inputs`: melodies (chroma per window) and audio prompts (codes, the first window's context).
- `sampling`: guidance and top-k/top-p sampling over the candidates only (transformers' own is
  dominated by its full-vocabulary multinomial on CPU).
- `batching`: `auto` batch size, back-off in halves, failure injection for tests.
- `normalize`: peak, BS.1770 loudness, or none. `progress`: the worker's per-batch progress line.
"""

from musicsweep.engine.generate import MusicEngine, load_engine

__all__ = ["MusicEngine", "load_engine"]
