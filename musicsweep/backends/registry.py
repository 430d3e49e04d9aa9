"""The one registry of backend names and the module of each, read by config validation and by
`get_backend`. Data only, so that `config` can import it without importing any backend."""

BACKENDS = {
    "local": "musicsweep.backends.local:LocalBackend",
    "ssh": "musicsweep.backends.ssh:SSHBackend",
    "slurm": "musicsweep.backends.slurm.backend:SlurmBackend",
    "ec2": "musicsweep.backends.ec2.backend:EC2Backend",
    "runpod": "musicsweep.backends.runpod.backend:RunPodBackend",
    "ray": "musicsweep.backends.ray.backend:RayBackend",
}
BACKEND_NAMES = tuple(BACKENDS)


def unknown_backend_message(name: str, where: str) -> str:
    return f"{where}: unknown backend {name!r} (known: {list(BACKEND_NAMES)})"
