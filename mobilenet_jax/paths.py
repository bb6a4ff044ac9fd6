"""The one path layer: every file the project reads or writes (trainer workdirs, config.json,
metrics.jsonl, TensorBoard events, checkpoints, evaluate/convert inputs and outputs,
experiment results, the tfds data_dir) is named through here.

Paths are `etils.epath.Path`s, the same layer orbax writes checkpoints through, so local
paths and the object stores epath serves (`gs://`, `s3://`, `az://`, `hf://`) behave the
same. Which client serves a URI is epath's choice: TensorFlow's file system when TensorFlow
is installed (as requirements.txt installs it), fsspec (gcsfs, s3fs) when it is not or with
`EPATH_USE_TF=0`. orbax writes the checkpoint arrays with tensorstore, which speaks to
`gs://` and `s3://` itself.

A path the layer cannot serve raises `PathError` before anything is written: a URI of
another scheme (which pathlib would otherwise turn into a local folder named `gs:`-like),
a workdir that names a file, a bucket that does not exist, is out of reach, or refuses to
be written. `writable_dir` decides that by writing, reading back and deleting a small probe
file, so the answer is what the file system does, not a guess.
"""
from __future__ import annotations

import os
import re
import socket
import time
from typing import Optional, Union

from etils import epath

from mobilenet_jax.errors import UserError

PathLike = Union[str, os.PathLike]

# The URI schemes epath serves (etils.epath.gpath); anything else with "://" is refused.
SERVED_SCHEMES = ("gs", "s3", "az", "hf")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class PathError(UserError, ValueError):
    """A path the project cannot read or write: the message names it and what to do."""


def scheme(path: PathLike) -> Optional[str]:
    """The URI scheme of `path` ("gs" for gs://bucket/x), None for a local path."""
    match = _SCHEME.match(os.fspath(path))
    return match.group(1) if match else None


def is_local(path: PathLike) -> bool:
    return scheme(path) is None


def resolve(path: PathLike, what: str = "path") -> epath.Path:
    """`path` as an epath.Path: local paths absolute (with ~ expanded), URIs as given.
    `what` names the path in errors (a flag or config key, e.g. "--workdir")."""
    if isinstance(path, epath.Path):
        return path
    text = os.fspath(path)
    if not text:
        raise PathError(f"{what} is empty: give a local directory or a gs:// URI")
    uri_scheme = scheme(text)
    if uri_scheme is None:
        return epath.Path(os.path.abspath(os.path.expanduser(text)))
    if uri_scheme not in SERVED_SCHEMES:
        raise PathError(
            f"{what}={text}: no file system serves '{uri_scheme}://' "
            f"(served: local paths, {', '.join(s + '://' for s in SERVED_SCHEMES)}); "
            f"use a local path or a bucket URI"
        )
    return epath.Path(text)


def _unreachable(path: PathLike, what: str, verb: str, error: Exception) -> PathError:
    advice = (
        f"check that the bucket exists, that this machine reaches it, and that its "
        f"credentials may {verb} it (on a Cloud TPU VM: the VM's service account needs "
        f"Storage Object Admin on the bucket)"
        if not is_local(path) else f"choose a path this user may {verb}"
    )
    detail = " ".join(str(error).split())[:300]
    return PathError(f"{what}={path}: cannot {verb} there ({type(error).__name__}: {detail}); {advice}")


def writable_dir(path: PathLike, what: str = "--workdir") -> epath.Path:
    """Creates directory `path` (and its parents) and proves it writable by writing, reading
    back and deleting a probe file; any failure is a PathError naming `what`. Call it
    before writing anything else, so a bad path never leaves a partial run behind."""
    directory = resolve(path, what)
    if is_local(directory) and directory.exists() and not directory.is_dir():
        raise PathError(f"{what}={path} names an existing file; give a directory")
    probe = directory / f".write_probe-{socket.gethostname()}-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        if probe.read_text() != "ok":
            raise OSError(f"the probe file {probe} reads back other content")
        probe.unlink()
    except Exception as e:  # every client raises its own types (OSError, TF and HTTP errors)
        raise _unreachable(path, what, "write", e) from e
    return directory


def exists(path: PathLike, what: str = "path") -> bool:
    """Whether `path` exists; a file system that cannot answer (a bucket out of reach) is a
    PathError, not an exception of its client."""
    resolved = resolve(path, what)
    try:
        return resolved.exists()
    except Exception as e:  # every client raises its own types
        raise _unreachable(path, what, "read", e) from e


def existing(path: PathLike, what: str = "path") -> epath.Path:
    """`path` resolved, which must exist (file or directory); else a PathError."""
    if not exists(path, what):
        raise PathError(f"{what}={path}: no such file or directory")
    return resolve(path, what)


class TextAppender:
    """Appends text to one file. A local file is appended to at each `write`. Object stores
    have no append: there every write of the object rewrites it whole (atomically, so a
    reader never sees half a line), so `write` buffers and the buffer goes out on `flush()`
    (at most `interval` seconds after the first buffered line, at the next `write`), and
    the object's earlier text is read once, not at every line."""

    def __init__(self, path: PathLike, interval: float = 30.0):
        self.path = resolve(path)
        self._local = is_local(self.path)
        self._interval = interval
        self._text: Optional[str] = None  # the object's text as last written or read
        self._pending: list[str] = []
        self._since = 0.0  # time.monotonic() of the oldest pending text

    def write(self, text: str) -> None:
        if self._local:
            with self.path.open("a") as f:
                f.write(text)
            return
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(text)
        if time.monotonic() - self._since >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered text out (nothing to do on a local file)."""
        if not self._pending:
            return
        if self._text is None:
            self._text = self.path.read_text() if self.path.exists() else ""
        self._text += "".join(self._pending)
        self.path.write_text(self._text)
        self._pending = []

    def forget(self) -> None:
        """Call after the file was rewritten by other means (pending text is flushed first):
        the next flush reads it again."""
        self.flush()
        self._text = None


def to_str(path: PathLike, what: str = "path") -> str:
    """The string form clients outside epath take (tfds, TensorFlow, JAX, JSON records)."""
    return os.fspath(resolve(path, what))
