"""Bad EC2 input fails with one line naming the file and key, before any instance starts or anything is written."""

from __future__ import annotations

import pytest

from musicsweep import run_sweep
from musicsweep.errors import MusicsweepError
from tests.fixtures.ec2 import EC2Project


def variants(count: int) -> list[dict]:
    return [{"prompt": f"808 drums {i}", "duration_s": 2, "model": "tiny", "seed": i} for i in range(count)]


def assert_fails_before_anything(ec2_project: EC2Project, pattern: str, clips: int = 2, **ec2: object) -> None:
    ec2_project.configure(**ec2)
    name = ec2_project.sweep_name()
    with pytest.raises(MusicsweepError, match=pattern) as info:
        run_sweep(variants(clips), name, yes=True)
    message = str(info.value)
    assert "\n" not in message and "musicsweep.yaml" in message
    assert not (ec2_project.folder / "runs").exists()
    assert ec2_project.s3_keys(f"{name}/") == []
    assert ec2_project.instance_ids(name) == []


def test_missing_instance_profile(ec2_project: EC2Project) -> None:
    assert_fails_before_anything(ec2_project, r"'backends\.ec2\.instance_profile'.*required", instance_profile=None)


def test_unknown_region(ec2_project: EC2Project) -> None:
    assert_fails_before_anything(
        ec2_project, r"'backends\.ec2\.region'.*unknown EC2 region 'us-middle-9'", region="us-middle-9"
    )


def test_unknown_instance_type(ec2_project: EC2Project) -> None:
    assert_fails_before_anything(
        ec2_project, r"'backends\.ec2\.instance_types'.*g5\.bogus", instance_types=["g5.xlarge", "g5.bogus"]
    )


def test_user_data_over_16_kb(ec2_project: EC2Project) -> None:
    assert_fails_before_anything(ec2_project, r"user data is \d+ bytes, over EC2's 16384-byte limit", clips=1200)


def test_estimate_over_max_total(ec2_project: EC2Project) -> None:
    assert_fails_before_anything(
        ec2_project, r"'backends\.ec2\.max_total_usd'.*estimated cost \$\d+\.\d\d is above", hourly_cost_usd=400.0
    )


def test_max_total_is_checked_against_the_calibrated_estimate(ec2_project: EC2Project) -> None:
    """Boot history of 50 min on g5.xlarge takes a fleet the 5-minute guess let through over the limit."""
    from musicsweep.costs.calibration import Calibration, CalibrationKey, save_calibration

    ec2_project.configure(startup_minutes=None, hourly_cost_usd=1.0, max_total_usd=0.5)
    run_sweep(variants(2), ec2_project.sweep_name(), dry_run=True)  # the guess: about $0.09
    calibration = Calibration()
    sample = {"id": "old/1", "time": 1.0, "boot_s": 3000.0, "setup_s": 1.0, "model_load_s": 3.0, "idle_s": 1.0}
    calibration.add(CalibrationKey("ec2", "g5.xlarge", "tiny", "float32", "cuda"), sample)
    save_calibration(calibration)
    assert_fails_before_anything(
        ec2_project,
        r"'backends\.ec2\.max_total_usd'.*estimated cost \$0\.8\d is above",
        startup_minutes=None,
        hourly_cost_usd=1.0,
        max_total_usd=0.5,
    )
