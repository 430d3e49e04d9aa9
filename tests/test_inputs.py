"""Melody and audio-prompt sweeps end to end: plan-time checks, shipping inputs once, job ids by content."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicsweep import MusicsweepError, VariantGenerator, run_sweep
from musicsweep.cli.hydra_app import SweepAxes, sweep_variants
from musicsweep.cli.pull import main as auto_pull_main
from musicsweep.costs.rows import read_cost_report
from musicsweep.sweep.plan import jobs_from_variants
from tests.fixtures.s3 import S3Bucket
from tests.helpers import open_bucket_store, wait_for_sweep, wav_info, write_s3_config


def write_tone(path: Path, seconds: float, channels: int = 1, rate: int = 32000, pitch: float = 220.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * pitch * (c + 1) * t) for c in range(channels)], axis=1)
    soundfile.write(path, audio, rate, subtype="PCM_16")
    return path


def inputs_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/inputs/*.wav"))


@pytest.mark.e2e
def test_melody_by_prompt_by_seed_sweep_on_the_local_backend(project: Path) -> None:
    """2 melodies x 1 audio prompt (48 kHz stereo, resampled) x 2 seeds on tiny-melody: 4 clips of
    2 s less the 0.5 s prompt, the 3 inputs shipped once each."""
    melodies = [write_tone(project / "a.wav", 3.0), write_tone(project / "b.wav", 1.0, pitch=330.0)]
    write_tone(project / "intro.wav", 0.5, channels=2, rate=48000)
    vg = VariantGenerator()
    vg.add("prompt", ["warm piano"])
    vg.add("duration_s", [2])
    vg.add("model", ["tiny-melody"])
    vg.add("melody", [str(m.name) for m in melodies])
    vg.add("audio_prompt", ["intro.wav"])
    vg.add("seed", [1, 2])
    plan = run_sweep(vg, name="melodies")
    assert len(plan.to_run) == 4
    assert set(wait_for_sweep("melodies").values()) == {"done"}
    sweep = project / "runs" / "melodies"
    shipped = inputs_in(project / "runs")
    assert len(shipped) == 3
    assert all(hashlib.sha256(path.read_bytes()).hexdigest() == path.stem for path in shipped)
    converted, rate = soundfile.read(next(p for p in shipped if soundfile.info(p).channels == 2))
    assert (rate, converted.shape) == (32000, (16000, 2))
    wavs = sorted((sweep / "audio").glob("*.wav"))
    assert len(wavs) == 4
    assert {wav_info(wav) for wav in wavs} == {(32000, 1, 48000)}
    clips = [soundfile.read(wav)[0] for wav in wavs]
    assert len({clip.tobytes() for clip in clips}) == 4, "each melody and seed gives its own clip"
    assert auto_pull_main(["melodies", "--once"]) == 0
    assert len(read_cost_report(sweep / "cost_report.csv")) == 4


@pytest.mark.e2e
def test_one_byte_changed_in_a_melody_makes_exactly_one_new_clip(project: Path) -> None:
    first, second = write_tone(project / "one.wav", 1.0), write_tone(project / "two.wav", 1.0, pitch=330.0)
    variants = [
        {"prompt": "warm piano", "duration_s": 1, "model": "tiny-melody", "melody": "one.wav", "seed": 1},
        {"prompt": "warm piano", "duration_s": 1, "model": "tiny-melody", "melody": "two.wav", "seed": 1},
    ]
    run_sweep(variants, name="edit")
    assert set(wait_for_sweep("edit").values()) == {"done"}
    data = bytearray(first.read_bytes())
    data[2000] ^= 0x01  # one sample's low bit, in the data chunk
    first.write_bytes(bytes(data))
    plan = run_sweep(variants, name="edit")
    assert (len(plan.to_run), len(plan.skipped)) == (1, 1)
    assert plan.to_run[0].melody.source == str(first)
    assert set(wait_for_sweep("edit").values()) == {"done"}
    assert len(list((project / "runs" / "edit" / "audio").glob("*.wav"))) == 3
    assert len(inputs_in(project / "runs")) == 3
    assert plan.skipped[0].melody.source == str(second)


def test_audio_prompt_sweep_on_s3_keeps_the_prompt_in_stereo(project: Path, moto_bucket: S3Bucket) -> None:
    write_s3_config(project, moto_bucket.url, moto_bucket.server.endpoint_url)
    write_tone(project / "intro.wav", 0.5)  # mono: the stereo model hears it on both channels
    variants = [
        {"prompt": p, "duration_s": 1.5, "model": "tiny-stereo", "audio_prompt": "intro.wav", "prompt_in_output": True}
        for p in ("warm piano", "dark techno")
    ]
    run_sweep(variants, name="continued")
    assert set(wait_for_sweep("continued", timeout_s=300).values()) == {"done"}
    store = open_bucket_store(moto_bucket)
    keys = store.list("continued/")
    shipped = [key for key in keys if key.startswith("continued/inputs/")]
    assert len(shipped) == 1
    assert hashlib.sha256(store.get_bytes(shipped[0])).hexdigest() == shipped[0].rsplit("/", 1)[1][:-4]
    audio = [key for key in keys if key.startswith("continued/audio/")]
    assert len(audio) == 2
    for key in audio:
        clip, rate = soundfile.read(io.BytesIO(store.get_bytes(key)))
        assert (rate, clip.shape) == (32000, (48000, 2))


BAD_INPUTS = [
    ({"melody": "missing.wav"}, "variant 0: key 'melody': cannot read {project}/missing.wav: No such file"),
    ({"melody": "notes.wav"}, "variant 0: key 'melody': {project}/notes.wav is not audio soundfile can read"),
    ({"melody": "six.wav"}, "variant 0: key 'melody': {project}/six.wav has 6 channels; give mono or stereo audio"),
    ({"melody": "slow.wav"}, "variant 0: key 'melody': {project}/slow.wav is sampled at 4000 Hz, which cannot"),
    (
        {"audio_prompt": "long.wav"},
        "variant 0: key 'audio_prompt' ({project}/long.wav) is 3 s, not shorter than the clip",
    ),
    (
        {"audio_prompt": "huge.wav", "duration_s": 40},
        "variant 0: key 'audio_prompt' ({project}/huge.wav) is 31 s, not shorter than the model's 30 s window",
    ),
    ({"melody": "a.wav", "model": "tiny"}, "variant 0: key 'melody' ({project}/a.wav): model 'tiny' has no melody"),
    ({"prompt_in_output": True}, "variant 0: key 'prompt_in_output' needs an 'audio_prompt'"),
]


BAD_IDS = ["missing", "not-audio", "channels", "rate", "prompt-vs-clip", "prompt-vs-window", "model", "keep-alone"]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUTS, ids=BAD_IDS)
def test_bad_input_fails_at_plan_time_in_one_line_with_nothing_written(project: Path, extra, message) -> None:
    (project / "notes.wav").write_text("not audio at all\n")
    write_tone(project / "a.wav", 1.0)
    write_tone(project / "six.wav", 0.2, channels=6)
    write_tone(project / "slow.wav", 0.5, rate=4000)
    write_tone(project / "long.wav", 3.0)
    write_tone(project / "huge.wav", 31.0)
    variant = {"prompt": "warm piano", "duration_s": 2, "model": "tiny-melody"} | extra
    with pytest.raises(MusicsweepError) as error:
        run_sweep([variant], name="bad")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(message.format(project=project))
    assert not (project / "runs").exists()


def test_prompts_file_and_hydra_axes_name_inputs(project: Path) -> None:
    (project / "tunes").mkdir()
    write_tone(project / "tunes" / "a.wav", 1.0)
    write_tone(project / "intro.wav", 0.5)
    (project / "prompts.txt").write_text(
        "warm piano ; 2 ; first ; melody=tunes/a.wav\n"
        "dark techno ; 2 ; second ; audio_prompt=intro.wav ; prompt_in_output=true\n"
        "plain ; 2 ; third\n"
    )
    vg = VariantGenerator.from_prompts_file(project / "prompts.txt")
    vg.add("model", ["tiny-melody"])
    jobs = jobs_from_variants(vg.variants(), "file")
    assert [job.melody is not None for job in jobs] == [True, False, False]
    assert [job.audio_prompt is not None for job in jobs] == [False, True, False]
    assert [job.wav_samples for job in jobs] == [64000, 64000, 64000]
    assert jobs[0].melody.source == str(project / "tunes" / "a.wav")
    axes = SweepAxes(prompts=["x"], durations=[2], melodies=["tunes/a.wav"], audio_prompts="intro.wav")
    (variant,) = sweep_variants(axes, "tiny-melody")
    assert (variant["melody"], variant["audio_prompt"]) == ("tunes/a.wav", "intro.wav")
    (job,) = jobs_from_variants([variant], "hydra")
    assert job.wav_samples == 64000 - 16000
