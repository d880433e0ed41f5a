"""The one error type the CLI turns into `jalkal: message` and exit status 1."""


class JalkalError(Exception):
    """A user-facing error: bad input, a missing file, a bad option."""
