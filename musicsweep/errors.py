"""The one exception type users see: a single line that names the file, line or key at fault."""


class MusicsweepError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""
