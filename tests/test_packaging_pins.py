"""The pins a launch ships when no lock is at hand: the versions installed on the launcher."""

from __future__ import annotations

from importlib import metadata

from musicsweep.remote.packaging import installed_constraints


def test_constraints_pin_every_installed_distribution_but_musicsweep() -> None:
    lines = installed_constraints().splitlines()
    pins = dict(line.split("==") for line in lines)
    assert len(pins) == len(lines) and list(pins) == sorted(pins)
    for name in ("numpy", "pyyaml", "boto3", "hydra-core"):
        assert pins[name] == metadata.version(name)
    assert "musicsweep" not in pins
