"""What the user types: `musicsweep`, launch, auto_pull, and the terminal display."""
