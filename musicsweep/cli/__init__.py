"""What the user types, parsed and printed: `musicsweep`, the Hydra app, `pull`, and the terminal display."""
