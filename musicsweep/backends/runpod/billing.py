"""What RunPod pods cost: each worker's pods, creation to termination, at their `costPerHr`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from musicsweep.backends.runpod.api import RunPodAPI
from musicsweep.backends.runpod.ledger import PodLedger, PodRecord
from musicsweep.backends.runpod.settings import RunPodSettings
from musicsweep.billing import EstimateFigures, MachineTime, WorkerKey
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest


class PodBilling:
    """Priced before launch from the API's GPU list, billed after from the pod ledger."""

    spends_money = True
    boots_machines = True

    def __init__(self, settings: RunPodSettings, api: Callable[[], RunPodAPI]) -> None:
        self.settings = settings
        self.api = api
        self.gpu_prices: dict[str, float] = {}

    def load_prices(self) -> None:
        """GPU type -> on-demand $/h for the configured cloud type."""
        price_key = "communityPrice" if self.settings.cloud_type == "COMMUNITY" else "securePrice"
        for gpu_id, gpu in self.api().gpu_types().items():
            self.gpu_prices[gpu_id] = float(gpu.get(price_key) or 0.0)

    def hourly_usd(self) -> float:
        """The first GPU type's price: what a shard is planned at."""
        if not self.gpu_prices:
            self.load_prices()
        return self.gpu_prices.get(self.settings.gpu_types[0], 0.0)

    def machine_kind(self, host: str) -> str:
        return self.settings.gpu_types[0]  # the type priced above, and calibrated as

    def estimate_figures(self) -> EstimateFigures:
        return EstimateFigures()

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        ran = [record for record in PodLedger(sweep).pods.values() if record.host is not None]
        return {(record.launch_id, record.worker_id): record.gpu_type for record in ran}

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        """Pods discarded on the way (not ready in time) were paid too: they count towards the
        worker that replaced them, as one span from the first creation at the rate that gives their total."""
        pods: dict[WorkerKey, list[PodRecord]] = defaultdict(list)
        for record in PodLedger(sweep).pods.values():
            pods[(record.launch_id, record.worker_id)].append(record)
        now = time.time()
        times: dict[WorkerKey, MachineTime] = {}
        for key, records in pods.items():
            if any(record.host is not None for record in records):
                start = min(record.created for record in records)
                end = max(record.ended or now for record in records)
                paid = sum(((record.ended or now) - record.created) * record.cost_per_hr for record in records)
                times[key] = MachineTime(start, end, paid / (end - start) if end > start else 0.0)
        return times
