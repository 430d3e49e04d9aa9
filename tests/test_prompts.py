"""prompts.txt import: `PROMPT ; DURATION ; FILE_NAME`, comments, and errors naming the line."""

from pathlib import Path

import pytest

from musicsweep import MusicsweepError, VariantGenerator
from musicsweep.sweep.plan import jobs_from_variants

GOOD = """\
# the existing scripts' format
lofi hip hop with warm piano ; 30 ; lofi_piano

epic orchestral trailer;180;epic.wav
"""


def test_prompts_file_becomes_variants(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text(GOOD)
    variants = VariantGenerator.from_prompts_file(path).variants()
    assert [(v["prompt"], v["duration_s"], v["file_name"]) for v in variants] == [
        ("lofi hip hop with warm piano", 30.0, "lofi_piano"),
        ("epic orchestral trailer", 180.0, "epic"),
    ]
    jobs = jobs_from_variants(variants, "from-file")
    assert jobs[0].output_name.startswith("lofi_piano_") and jobs[1].output_name.startswith("epic_")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("only a prompt", "prompts.txt:2: expected 'PROMPT ; DURATION ; FILE_NAME', got 1 field"),
        ("lofi ; ten ; a", "prompts.txt:2: field DURATION is not a number: 'ten'"),
        ("lofi ; -5 ; a", "prompts.txt:2: field DURATION must be positive"),
        ("lofi ; 0 ; a", "prompts.txt:2: field DURATION must be positive"),
        (" ; 10 ; a", "prompts.txt:2: field PROMPT is empty"),
        ("lofi ; 10 ; ", "prompts.txt:2: field FILE_NAME is empty"),
        ("lofi ; 10 ; first", "prompts.txt:2: field FILE_NAME 'first' duplicates line 1"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text(f"rain ; 10 ; first\n{line}\n")
    with pytest.raises(MusicsweepError) as error:
        VariantGenerator.from_prompts_file(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MusicsweepError, match="cannot read prompts file"):
        VariantGenerator.from_prompts_file(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lofi ; 1e9 ; b", "key 'duration_s' is 1e+09 s, above max_duration_s"),
        ("lofi ; 10 ; b ; melody=nope.wav", "nope.wav"),
        ("lofi ; 10 ; b ; prompt_in_output=true", "key 'prompt_in_output' needs an 'audio_prompt'"),
    ],
)
def test_every_plan_time_error_of_a_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    """A value the prompts file parses but a later check refuses still names `prompts.txt:LINE`."""
    path = tmp_path / "prompts.txt"
    path.write_text(f"rain ; 10 ; first\n{line}\n")
    variants = VariantGenerator.from_prompts_file(path).variants()
    with pytest.raises(MusicsweepError) as error:
        jobs_from_variants(variants, "from-file", base_dir=tmp_path)
    assert str(error.value).startswith(f"{path}:2: variant 1 ") and message in str(error.value)
    assert "\n" not in str(error.value)
