"""tfds data sets on first contact: prepared in the configured data_dir on first use, or one
line that says what to do.

`ensure_prepared(name, data_dir, download=..., manual_dir=...)` is the one path that the
trainer, `python -m mobilenet_jax.evaluate`, the experiments and `python -m mobilenet_jax.data
prepare` take before reading a tfds set (data_dir local or a bucket, through mobilenet_jax.paths):

- prepared (tfds's dataset_info.json is there, and every shard file it lists once any is):
  nothing to do;
- half-prepared (the version directory exists but tfds's dataset_info.json or shard files are
  missing: a preparation or a copy that was interrupted): DataError naming the directory, never
  read;
- not prepared, a set tfds downloads itself (cifar10, cifar100, imagenette, coco/2017, ...):
  `builder.download_and_prepare()` into data_dir, with tfds's own progress bars; a failed
  download is a DataError saying how to prepare the data on another machine;
- not prepared, a set whose archives are downloaded by hand (imagenet2012: tfds's
  MANUAL_DOWNLOAD_INSTRUCTIONS): prepared from manual_dir (default
  `<data_dir>/downloads/manual`, tfds's); without the archives a DataError names them, the
  directory to put them in and the prepare command;
- `download=False` (config.data_download; a pod whose data must already be in its bucket): a
  set not prepared is a DataError instead.

On a multi-process run process 0 prepares while the others wait (train/distributed.py
`primary_first`); then every process checks that it sees the prepared data.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError

log = logging.getLogger("mobilenet_jax")

# tfds retries a connection that fails 10 times with exponential backoff (tfds's
# downloader.MAX_RETRIES, urllib3's Retry with backoff factor 0.2): 3.4 minutes before a
# machine without internet hears that the data's host is out of reach. 4 retries wait 2.8 s.
DOWNLOAD_RETRIES = 4


class DataError(UserError, RuntimeError):
    """A tfds data set that cannot be read: not prepared, half-prepared, or its preparation
    failed or is forbidden; the message says what to do."""


def prepare_command(name: str, data_dir: str, manual_dir: str = "") -> str:
    """The shell command that prepares `name` in `data_dir` ahead of time."""
    manual = f" --manual-dir {manual_dir}" if manual_dir else ""
    return f"python -m mobilenet_jax.data prepare {name} --data-dir {data_dir}{manual}"


def tfds_builder(name: str, data_dir: str = ""):
    """tfds's builder of `name` reading from `data_dir` ("" = tfds's default data_dir); a
    data_dir out of reach is a PathError here, not an exception of tfds's file system client."""
    import tensorflow_datasets as tfds

    if data_dir:
        paths.exists(data_dir, "config.data_dir")
    return tfds.builder(name, data_dir=paths.to_str(data_dir, "config.data_dir") if data_dir else None)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cause(error: BaseException) -> str:
    return f"{type(error).__name__}: {_one_line(error)}"


def half_prepared(builder) -> str:
    """What is missing from a version directory that exists ("" when it is complete): tfds's
    dataset_info.json, or, once any shard file is there, shard files that it lists (an
    interrupted preparation or copy). A directory of metadata alone is complete: it is what
    `tfds.testing.mock_data(policy=USE_FILES)` reads."""
    present = {p.name for p in builder.data_path.iterdir()}
    if "dataset_info.json" not in present:
        return "it has no dataset_info.json"
    shards = {split: [p.name for p in info.filepaths] for split, info in builder.info.splits.items()}
    if not present & {name for names in shards.values() for name in names}:
        return ""
    missing = [f"{split}: {len(absent)} of {len(names)}" for split, names in shards.items()
               if (absent := [n for n in names if n not in present])]
    return f"shard files listed in its dataset_info.json are missing ({', '.join(missing)})" if missing else ""


def stale_preparations(builder) -> list[str]:
    """Directories that an interrupted tfds preparation left beside the version directory
    (tfds writes into `incomplete.XXXXXX_<version>` and renames it when done)."""
    parent = builder.data_path.parent
    if not parent.exists():
        return []
    return sorted(str(p) for p in parent.glob(f"incomplete.*_{builder.data_path.name}"))


def _check_not_half_prepared(builder, name: str, data_dir: str) -> None:
    if not paths.exists(builder.data_path, "config.data_dir"):
        return
    missing = half_prepared(builder)
    if missing:
        raise DataError(
            f"{name} in {builder.data_path} is half-prepared ({missing}: a preparation or a copy "
            f"that was interrupted); it is not read. Delete that directory and prepare it again: "
            f"{prepare_command(name, data_dir)}")


def is_manual(builder) -> bool:
    """Whether tfds needs the set's archives downloaded by hand (imagenet2012)."""
    return bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS)


def manual_instructions(builder) -> str:
    """tfds's own words on which archives to download by hand, on one line."""
    return _one_line(builder.MANUAL_DOWNLOAD_INSTRUCTIONS, limit=600)


def default_manual_dir(builder) -> str:
    """tfds's default manual_dir: `<data_dir>/downloads/manual`."""
    return str(paths.resolve(str(builder.data_dir_root)) / "downloads" / "manual")


def _manual_archives_present(manual_dir: str) -> bool:
    """tfds's own test for a usable manual_dir: it exists and is not empty."""
    directory = paths.resolve(manual_dir, "--manual-dir")
    return paths.exists(directory, "--manual-dir") and any(True for _ in directory.iterdir())


def _not_prepared_message(builder, name: str, data_dir: str, manual_dir: str, given_manual_dir: str) -> str:
    stale = stale_preparations(builder)
    leftover = f"; an interrupted preparation left {', '.join(stale)}: delete it" if stale else ""
    if is_manual(builder):
        return (f"{name} is not prepared in {data_dir}, and tfds cannot download it: download its "
                f"archives by hand into {manual_dir} (tfds: {manual_instructions(builder)}), then run "
                f"{prepare_command(name, data_dir, given_manual_dir)}{leftover}")
    return f"{name} is not prepared in {data_dir}{leftover}"


@contextlib.contextmanager
def _bounded_download_retries() -> Iterator[None]:
    """tfds's downloader with DOWNLOAD_RETRIES connection retries instead of its 10."""
    from tensorflow_datasets.core.download import downloader

    before = downloader.MAX_RETRIES
    downloader.MAX_RETRIES = DOWNLOAD_RETRIES
    try:
        yield
    finally:
        downloader.MAX_RETRIES = before


def prepare(name: str, data_dir: str = "", *, download: bool = True, manual_dir: str = ""):
    """Prepares `name` in `data_dir` if it is not (this process alone; see the module doc);
    returns tfds's builder. Raises DataError with what to do when it cannot."""
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    root = str(builder.data_dir_root)
    _check_not_half_prepared(builder, name, root)
    if paths.exists(builder.data_path, "config.data_dir"):
        return builder
    given_manual_dir, manual_dir = manual_dir, manual_dir or default_manual_dir(builder)
    if not download:
        not_prepared = _not_prepared_message(builder, name, root, manual_dir, given_manual_dir)
        raise DataError(
            f"{not_prepared} (config.data_download=False: this run prepares no data)" if is_manual(builder) else
            f"{not_prepared}, and config.data_download=False forbids preparing it in this run: prepare it "
            f"first with {prepare_command(name, root)}")
    for stale in stale_preparations(builder):
        log.warning("%s: an interrupted preparation left %s (not read; delete it to free its space)", name, stale)
    paths.writable_dir(root, "config.data_dir")
    log.info("%s is not prepared in %s: preparing it %s (first use)", name, root,
             f"from the archives in {manual_dir}" if is_manual(builder) else "from its download")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir if is_manual(builder) else None)
    try:
        with _bounded_download_retries():
            builder.download_and_prepare(download_config=config)
    except (OSError, AssertionError, tfds.download.DownloadError,
            tfds.download.download_manager.NonMatchingChecksumError) as e:
        # tfds's other download threads (COCO fetches 5 archives at once) go on retrying after
        # the first failure; their warnings would print after the error line.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        if is_manual(builder) and not _manual_archives_present(manual_dir):
            raise DataError(_not_prepared_message(builder, name, root, manual_dir, given_manual_dir)) from e
        if is_manual(builder):
            raise DataError(f"preparing {name} in {root} from the archives in {manual_dir} failed "
                            f"({_cause(e)}); tfds expects: {manual_instructions(builder)}") from e
        raise DataError(
            f"{name} is not prepared in {root} and downloading it failed ({_cause(e)}); on a machine "
            f"that reaches the data's host run {prepare_command(name, 'DIR')} and copy DIR/{name.split('/')[0]} "
            f"into {root} (or prepare it into a bucket that both machines reach, and pass that bucket as "
            f"the data_dir)") from e
    log.info("%s prepared in %s", name, builder.data_path)
    return tfds_builder(name, data_dir)


def ensure_prepared(name: str, data_dir: str = "", *, download: bool = True, manual_dir: str = "") -> None:
    """`prepare` once per run: on process 0 while the other processes wait, which then check
    that they see the prepared data (a data_dir on a disk of process 0's host alone is not
    theirs)."""
    import jax

    from mobilenet_jax.train.distributed import primary_first

    primary_first(f"preparing {name}",
                  lambda: prepare(name, data_dir, download=download, manual_dir=manual_dir))
    if jax.process_index() == 0:
        return
    builder = tfds_builder(name, data_dir)
    if not paths.exists(builder.data_path, "config.data_dir") or half_prepared(builder):
        raise DataError(
            f"process 0 prepared {name} in {builder.data_dir_root}, but process {jax.process_index()} "
            f"does not find it complete there: on several hosts give a data_dir that every host reads "
            f"(a bucket, gs://...), or prepare it on every host with "
            f"{prepare_command(name, str(builder.data_dir_root))}")
