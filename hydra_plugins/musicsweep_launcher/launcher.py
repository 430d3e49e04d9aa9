"""`hydra/launcher=musicsweep`: every override combination becomes jobs of ONE musicsweep sweep.

Hydra's own launchers run the task function once per combination and block until each ends. This one
composes every combination's config, hands them all to `musicsweep.cli.hydra_app.run_requests`
(which plans and launches through the configured backend) and returns as soon as the workers are started.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class MusicsweepLauncherConf:
    _target_: str = "hydra_plugins.musicsweep_launcher.launcher.MusicsweepLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="musicsweep", node=MusicsweepLauncherConf, provider="musicsweep"
)


class MusicsweepLauncher(Launcher):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """The task function is not used: generation runs on the backend's hosts, never in this process."""
        self.config = config
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from musicsweep.cli.hydra_app import request_from_cfg, run_requests

        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        configs = [loader.load_sweep_config(self.config, list(overrides)) for overrides in job_overrides]
        plan = run_requests([request_from_cfg(config) for config in configs])
        return [
            JobReturn(
                overrides=list(overrides),
                cfg=config,
                task_name="musicsweep",
                status=JobStatus.COMPLETED,
                _return_value=plan.sweep.name,
            )
            for overrides, config in zip(job_overrides, configs, strict=True)
        ]
