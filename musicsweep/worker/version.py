"""A worker runs only for a launch of its own version: a host whose environment holds other code
would mix results of two code bases in one sweep, so it says so in one line and stops."""

from __future__ import annotations

from musicsweep.version import version


def other_version_refusal(launch_version: str) -> str | None:
    """The one line to stop with when the launch (`LaunchEnv.version`, empty when unknown) ran another version."""
    if launch_version and launch_version != version():
        return (
            f"this worker runs musicsweep {version()} but the launch is musicsweep {launch_version}: refusing to start"
        )
    return None
