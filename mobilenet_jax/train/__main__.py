"""`python -m mobilenet_jax.train --config configs/x.py --workdir DIR [--config.key=value]`.

Re-running the same command resumes from the latest readable checkpoint in DIR (local or a
bucket URI such as gs://bucket/run). Exit status: 0 when training finished; 143 (128 +
SIGTERM) when the run was preempted: a checkpoint was saved at a step boundary common to all
processes, and the same command resumes from it. A mistake (an unknown config key, a bad
value, a config file that does not load, an unusable workdir, a corrupt checkpoint with
nothing older to fall back on, a diverged loss) is one `error: ...` line and exit status 1
(2 for a malformed command line); `--verbose` or MOBILENET_JAX_VERBOSE=1 adds the traceback.
In multi-process runs every log line starts with `[host i/n]`; only host 0 logs at INFO
level and writes metrics and config.json.
"""
from __future__ import annotations

import json
import logging
import re
import sys

from absl import flags
from ml_collections import config_flags

from mobilenet_jax import cli
from mobilenet_jax.errors import Preempted, UsageError, UserError
from mobilenet_jax.train.config import ConfigError

PREEMPTED_EXIT_STATUS = Preempted.exit_status  # the shell's status of a SIGTERM'd process: not finished


_PROG = "python -m mobilenet_jax.train"


def _flags(argv: list[str]) -> tuple[flags.FlagValues, flags.FlagHolder, flags.FlagHolder]:
    """The command's flags for `argv`, in a FlagValues of their own (not absl's global one),
    so that `main` can run more than once in a process (tests, notebooks)."""
    values = flags.FlagValues()
    config = config_flags.DEFINE_config_file("config", None, "a configs/*.py file", flag_values=values,
                                             lock_config=True, sys_argv=[_PROG, *argv])
    workdir = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics", flag_values=values)
    flags.DEFINE_bool("verbose", False, f"on an error, also print its traceback (or set {cli.VERBOSE_ENV}=1)",
                      flag_values=values)
    return values, config, workdir


def _raised_by_config_file(error: BaseException) -> UserError | None:
    """The UserError a config file's get_config raised, from under the copy with a traceback
    for a message that config_flags raises in its place and absl's flag error around that."""
    found = None
    while error is not None:
        if isinstance(error, UserError):
            found = error
        error = error.__cause__ or error.__context__
    return found


def parse_flags(argv: list[str]):
    """(config, workdir) of `argv`; absl's failures become UsageError (the command line
    itself) or ConfigError (the config file, or an override of a key it does not have)."""
    values, config_flag, workdir_flag = _flags(argv)
    try:
        rest = values([_PROG, *argv])
        config = config_flag.value
        if config is not None:
            config.get("model")  # config_flags defers a failed load to the first access
    except flags.Error as e:
        raised = _raised_by_config_file(e)
        if raised is not None:  # e.g. a get_config(arg) told an argument it does not take
            raise raised from e
        unknown = re.search(r"Unknown command line flag '(config\.[^']+)'", str(e))
        if unknown:  # absl's word for a --config.<key> the config lacks (in some spellings)
            key = unknown.group(1).split(".", 1)[1]
            raise ConfigError(f"the config has no key {key!r}: check the spelling of the --config.* flags") from e
        raise UsageError(str(e)) from e
    except (KeyError, AttributeError) as e:
        key = str(e.args[0] if e.args else e).strip("'\"")
        raise ConfigError(f"the config has no key {key!r}: check the spelling of the --config.* flags") from e
    except OSError as e:  # config_flags' message ends with the OS's reason
        reason = str(e).strip().splitlines()[-1].strip()
        raise ConfigError(f"cannot load the config file: {reason}") from e
    except (SyntaxError, ImportError, NameError, TypeError) as e:
        raise ConfigError(f"cannot load the config file: {type(e).__name__}: {e}") from e
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments: {rest[1:]}")
    missing = [name for name, value in (("--config", config), ("--workdir", workdir_flag.value))
               if value is None]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)} (see --help)")
    return config, workdir_flag.value


class _StderrNow(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a record is emitted, not to the
    stream that was current when `main` ran (a caller's captured stream may be closed by
    then: tests, notebooks)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str]) -> int:
    if {"-h", "--help", "--helpfull"} & set(argv):
        print(__doc__ + "\n" + _flags(argv)[0].get_help())
        return 0
    config, workdir = parse_flags(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[_StderrNow()], force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax's per-save INFO chatter
    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing at INFO
    import jax

    from mobilenet_jax.train.distributed import log_format, maybe_initialize
    from mobilenet_jax.train.loop import train_and_evaluate

    if maybe_initialize(config.distributed):  # now the host is known: say it on every line
        logging.basicConfig(level=logging.INFO, format=log_format(), handlers=[_StderrNow()], force=True)
    if jax.process_index() != 0:
        logging.getLogger("mobilenet_jax").setLevel(logging.WARNING)
    result = train_and_evaluate(config, workdir)
    result.pop("state", None)
    logging.getLogger("mobilenet_jax").info("final %s", json.dumps(result))
    return PREEMPTED_EXIT_STATUS if result["preempted"] else 0


if __name__ == "__main__":
    cli.main_of(main)
