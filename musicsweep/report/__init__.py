"""The HTML listening report: a grid of the swept axes with players, spectrograms and audio checks."""
