"""SLURM: one array job per sweep, submitted here or through a login node over SSH."""
