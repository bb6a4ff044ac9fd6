"""The one base class of the user's mistakes.

`UserError` is what the user can act on: a config, a model name or width, a path, a file,
a corrupt checkpoint, a diverged loss. Every command (`mobilenet_jax/cli.py`) prints it as
one `error: ...` line and exits 1 (2 for `UsageError`); any other exception is a bug of
ours and keeps its traceback. Each module's own error class (ConfigError, ModelConfigError,
CheckpointError, ...) derives from it and from the builtin it has always been, so
`except ValueError` in user code keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what was asked for, or a run that cannot go on until the user acts."""

    exit_status = 1


class UsageError(UserError):
    """A command line that does not parse (unknown flag, malformed value)."""

    exit_status = 2


class Preempted(UserError):
    """A run stopped by SIGTERM at a checkpointed step boundary: nothing is lost, run the same
    command again to resume. Exit status 143, the shell's status of a SIGTERM'd process."""

    exit_status = 128 + 15
