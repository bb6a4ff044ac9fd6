"""`python -m mobilenet_jax.train --config configs/x.py --workdir DIR [--config.key=value]`.

Re-running the same command resumes from the latest checkpoint in DIR (local or a bucket URI
such as gs://bucket/run). Exit status: 0 when training finished; 143 (128 + SIGTERM) when
the run was preempted: a checkpoint was saved at a step boundary common to all processes,
and the same command resumes from it. In multi-process runs every log line starts with
`[host i/n]`; only host 0 logs at INFO level and writes metrics and config.json.
"""
from __future__ import annotations

import json
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics")
flags.mark_flags_as_required(["config", "workdir"])
PREEMPTED_EXIT_STATUS = 128 + 15  # the shell's status of a SIGTERM'd process: not finished


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax's per-save INFO chatter
    import jax

    from mobilenet_jax.train.distributed import log_format, maybe_initialize
    from mobilenet_jax.train.loop import train_and_evaluate

    if maybe_initialize(_CONFIG.value.distributed):  # now the host is known: say it on every line
        logging.basicConfig(level=logging.INFO, format=log_format(), force=True)
    if jax.process_index() != 0:
        logging.getLogger("mobilenet_jax").setLevel(logging.WARNING)
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    result.pop("state", None)
    logging.getLogger("mobilenet_jax").info("final %s", json.dumps(result))
    if result["preempted"]:
        sys.exit(PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":
    app.run(main)
