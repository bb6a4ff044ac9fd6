"""`python -m mobilenet_jax.data prepare NAME --data-dir D [--manual-dir M]`: prepares a tfds
data set ahead of time, the same way a run does on first use (data/prepare.py), e.g. on a
machine with internet, into a bucket that a pod then reads with config.data_download=False.

NAME is a tfds set the trainer reads (cifar10, cifar100, imagenette, coco/2017: downloaded by
tfds; imagenet2012: its archives downloaded by hand into M, default D/downloads/manual). D is
local or a bucket (gs://...); default: tfds's data_dir (~/tensorflow_datasets). Prints where
the data is and its splits.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from mobilenet_jax import cli
from mobilenet_jax.errors import UsageError


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mobilenet_jax.train.config import TFDS_ALL

    names = TFDS_ALL
    parser = cli.ArgumentParser(prog="python -m mobilenet_jax.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="download (or read the manual archives) and prepare NAME in D")
    prepare.add_argument("name", metavar="NAME", help=f"one of {', '.join(names)}")
    prepare.add_argument("--data-dir", default="", help="tfds data_dir, local or gs://... (default: tfds's)")
    prepare.add_argument("--manual-dir", default="",
                         help="where the archives of a manual set are (default: <data-dir>/downloads/manual)")
    args = parser.parse_args(argv)
    if args.name not in names:
        raise UsageError(f"unknown data set {args.name!r}; the tfds sets the trainer reads: {', '.join(names)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from mobilenet_jax.data.prepare import prepare as prepare_set

    builder = prepare_set(args.name, args.data_dir, manual_dir=args.manual_dir)
    splits = ", ".join(f"{split} {info.num_examples:,}" for split, info in builder.info.splits.items())
    print(f"{args.name} {builder.version} is prepared in {builder.data_path} ({splits} examples)")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
