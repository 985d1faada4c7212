"""Exceptions that the CLI turns into one-line messages (exit 2 for usage, 1 for failures)."""


class FamesError(Exception):
    """A failure the user can act on; the CLI prints its message and exits with status 1."""


class UsageError(FamesError):
    """Bad input from the user (arguments, files, values); the CLI exits with status 2."""
