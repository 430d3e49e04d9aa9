"""The bad-input table of issue 17, one test per row: each input gives one line naming the file,
line or key, and nothing is written (no `runs/`), or, where the row says so, simply works."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from musicsweep import MusicsweepError, VariantGenerator, run_sweep
from musicsweep.sweep.plan import jobs_from_variants
from tests.conftest import PROJECT_CONFIG


def tree(folder: Path) -> list[Path]:
    return sorted(path.relative_to(folder) for path in folder.rglob("*"))


def refused(project: Path, variants, message: str) -> str:
    """Run the sweep; it must fail with one line containing `message` and leave the project as it was."""
    before = tree(project)
    with pytest.raises(MusicsweepError) as error:
        run_sweep(variants, name="bad")
    text = str(error.value)
    assert message in text
    assert "\n" not in text
    assert tree(project) == before and not (project / "runs").exists()
    return text


def variant(**changes) -> list[dict]:
    return [{"prompt": "lofi piano", "duration_s": 2, "model": "tiny", "seed": 1} | changes]


def write_prompts(project: Path, data: bytes) -> Path:
    path = project / "prompts.txt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("source", ["prompts.txt", "sweep script"])
def test_infinite_duration_is_refused(project: Path, source: str) -> None:
    if source == "prompts.txt":
        path = write_prompts(project, b"lofi piano ; 5 ; a\ndark techno ; inf ; b\n")
        before = tree(project)
        with pytest.raises(MusicsweepError, match=r"prompts.txt:2: field DURATION must be finite, got 'inf'$"):
            run_sweep(VariantGenerator.from_prompts_file(path), name="bad")
        assert tree(project) == before
        return
    refused(project, variant(duration_s=math.inf), "variant 0: key 'duration_s' is not finite: inf")


def test_duration_above_max_duration_is_refused_with_the_limit(project: Path) -> None:
    refused(project, variant(duration_s=1e9), "key 'duration_s' is 1e+09 s, above max_duration_s (1800 s;")
    (project / "musicsweep.yaml").write_text(PROJECT_CONFIG + "max_duration_s: 60\n")
    refused(project, variant(duration_s=61), "above max_duration_s (60 s;")
    assert len(jobs_from_variants(variant(duration_s=1800), "ok")) == 1  # the default limit itself is fine


def test_non_utf8_prompts_file_names_file_line_and_offset(project: Path) -> None:
    path = write_prompts(project, b"lofi piano ; 5 ; a\ncaf\xe9 jazz ; 5 ; b\n")
    before = tree(project)
    with pytest.raises(MusicsweepError) as error:
        run_sweep(VariantGenerator.from_prompts_file(path), name="bad")
    assert str(error.value) == f"{path}:2: not UTF-8: byte 0xe9 at offset 22; save the file as UTF-8"
    assert tree(project) == before


@pytest.mark.parametrize("first_line", [b"lofi piano ; 5 ; a\n", b"# my prompts\nlofi piano ; 5 ; a\n"])
def test_utf8_bom_is_stripped(project: Path, first_line: bytes) -> None:
    path = write_prompts(project, b"\xef\xbb\xbf" + first_line + b"dark techno ; 3 ; b\n")
    jobs = jobs_from_variants(VariantGenerator.from_prompts_file(path).variants(), "bom")
    assert [job.prompt for job in jobs] == ["lofi piano", "dark techno"]
    assert [job.base_name for job in jobs] == ["a", "b"]


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_below_one_is_refused(project: Path, workers: int) -> None:
    (project / "musicsweep.yaml").write_text(PROJECT_CONFIG.replace("workers: 1", f"workers: {workers}"))
    refused(project, variant(), f"key 'backends.local'.workers: must be at least 1, got {workers}")


def test_negative_hourly_cost_is_refused(project: Path) -> None:
    (project / "musicsweep.yaml").write_text(PROJECT_CONFIG.replace("hourly_cost_usd: 0.5", "hourly_cost_usd: -1"))
    refused(project, variant(), "key 'backends.local'.hourly_cost_usd: must be at least 0, got -1.0")


def test_one_slash_s3_url_is_not_a_folder(project: Path) -> None:
    (project / "musicsweep.yaml").write_text(PROJECT_CONFIG.replace("store: ./runs", "store: s3:/my-bucket/prefix"))
    text = refused(project, variant(), "key 'store.url': 's3:/my-bucket/prefix' looks like an S3 URL")
    assert "s3://bucket/prefix" in text and not (project / "s3:").exists()


def test_invalid_bucket_name_is_one_line(project: Path) -> None:
    (project / "musicsweep.yaml").write_text(PROJECT_CONFIG.replace("store: ./runs", "store: s3://My_Bucket!/prefix"))
    refused(project, variant(), "key 'store.url': invalid bucket name 'My_Bucket!'")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"guidance_scale": "high"}, "variant 0: key 'guidance_scale' is not a number: 'high'"),
        ({"top_k": 2.5}, "variant 0: key 'top_k' is not an integer: 2.5"),
        ({"top_p": 1.5}, "variant 0: key 'top_p' must be in [0, 1], got 1.5"),
        ({"temperature": math.nan}, "variant 0: key 'temperature' is not finite: nan"),
        ({"seed": 1.5}, "variant 0: key 'seed' is not an integer: 1.5"),
        ({"prompt": None}, "variant 0: key 'prompt' must be a string, got None"),
    ],
    ids=["guidance_scale-high", "top_k-2.5", "top_p-1.5", "temperature-nan", "seed-1.5", "prompt-None"],
)
def test_bad_generation_value_names_the_key(project: Path, change: dict, message: str) -> None:
    refused(project, variant(**change), message)


def test_top_p_zero_means_off_and_integral_floats_are_integers() -> None:
    job = jobs_from_variants(variant(top_p=0, top_k=250.0, seed=7.0), "ok")[0]
    assert (job.params.top_p, job.params.top_k, job.seed) == (0.0, 250, 7)


def test_misspelled_generation_key_suggests_the_right_one(project: Path) -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi piano"])
    vg.add("duration_s", [2])
    vg.add("guidence_scale", [3.0, 5.0])
    message = "variant 0 (guidence_scale=3.0_"
    text = refused(project, vg, message)
    assert "unknown key 'guidence_scale': did you mean 'guidance_scale'?" in text
    assert "hide=True" in text and "'meta_guidence_scale'" in text


def test_metadata_keys_stay_possible() -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi piano"])
    vg.add("duration_s", [2])
    vg.add("take", [1, 2], hide=True)  # hidden: in the variant, not in its name, no error
    vg.add("seed", lambda take: [take * 10])
    vg.add("meta_mood", ["calm"])  # the documented prefix
    jobs = jobs_from_variants(vg.variants(), "meta")
    assert [(job.variant["take"], job.seed) for job in jobs] == [(1, 10), (2, 20)]
    assert jobs[0].variant["meta_mood"] == "calm"


def test_update_of_a_derived_key_keeps_it_derived() -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi piano", "dark techno"])
    vg.derive("file_name", lambda prompt: prompt.split()[0])
    vg.update("file_name", lambda prompt: f"{prompt.split()[-1]}-take")
    variants = vg.variants()
    assert [v["file_name"] for v in variants] == ["piano-take", "techno-take"]
    with pytest.raises(MusicsweepError, match="^variant key 'file_name': made with derive"):
        vg.update("file_name", ["a", "b"])


def test_dict_values_with_non_string_keys(project: Path) -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi piano"])
    vg.add("duration_s", [2])
    vg.add("meta_mix", [{1: 0.5, "rest": 0.5}, {2: 0.25, "rest": 0.75}])
    vg.add("seed", lambda meta_mix: [int(meta_mix["rest"] * 100)])
    variants = vg.variants()
    jobs = jobs_from_variants(variants, "mixed")
    assert [job.variant["meta_mix"]["rest"] for job in jobs] == [0.5, 0.75]
    assert len({v["_name"] for v in variants}) == 2
    bad = VariantGenerator()
    bad.add("prompt", ["lofi piano"])
    bad.add("duration_s", [2])
    bad.add("meta_mix", [{(1, 2): 0.5}, {3: 1.0}])
    refused(project, bad, "variant key 'meta_mix': dict key (1, 2) is not a string or number")
