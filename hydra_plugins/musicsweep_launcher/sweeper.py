"""`hydra/sweeper=musicsweep`: Hydra's basic override expansion, launched as one batch, writing nothing.

The basic sweeper saves `multirun.yaml` in a sweep folder before launching, and may split the
combinations into batches. A dry run must write nothing and a multirun must become exactly one
sweep, so this sweeper expands the overrides the same way and hands all of them to the launcher
in one call; the sweep's manifest is the record of what ran.
"""

from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class MusicsweepSweeperConf:
    _target_: str = "hydra_plugins.musicsweep_launcher.sweeper.MusicsweepSweeper"
    max_batch_size: Any = None
    params: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="musicsweep", node=MusicsweepSweeperConf, provider="musicsweep"
)


class MusicsweepSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        assert self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        combinations = [combination for batch in self.split_arguments(overrides, None) for combination in batch]
        self.validate_batch_is_legal(combinations)
        return [self.launcher.launch(combinations, initial_job_idx=0)]
