"""A local source for tfds's cifar10, for tests of preparation on first use without internet:
a tiny CIFAR-10 archive in the real binary format (`write_archive`), an HTTP server on
127.0.0.1 that serves it and counts the requests (`ArchiveServer`), and tfds's own cifar10
builder with only its download address changed (`LocalCifar10`, put in front of tfds's
registry by `use_local_cifar10`): the download, extraction, generation and progress bars are
tfds's. With the builder in place:

    python -m tests._tfds_local MODULE ARGS...   # = python -m MODULE ARGS... (URL in $URL_ENV)
    python -m tests._tfds_local --read COORDINATOR NUM_PROCESSES PROCESS_ID DATA_DIR
        # one host of a multi-process run: prepares configs/cifar.py's data as the trainer
        # does (process 0 prepares, the others wait), then reads a batch and prints a line
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import runpy
import sys
import tarfile
import threading
from collections import Counter

import numpy as np

URL_ENV = "MOBILENET_JAX_TEST_CIFAR10_URL"
ARCHIVE = "cifar-10-binary.tar.gz"
TRAIN_PER_BATCH = 8  # 5 train batches: 40 training images
NUM_TEST = 16


def write_archive(directory: str, seed: int = 0) -> str:
    """CIFAR-10's binary archive in miniature: 5 train batches of TRAIN_PER_BATCH records and a
    test batch of NUM_TEST (a label byte, then 32x32 R, G and B planes), and the label names."""
    rng = np.random.default_rng(seed)

    def batch(n: int) -> bytes:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        return np.concatenate([labels[:, None], images], axis=1).tobytes()

    files = {f"data_batch_{i}.bin": batch(TRAIN_PER_BATCH) for i in range(1, 6)}
    files["test_batch.bin"] = batch(NUM_TEST)
    files["batches.meta.txt"] = "\n".join(f"class_{i}" for i in range(10)).encode() + b"\n"
    path = os.path.join(directory, ARCHIVE)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class ArchiveServer:
    """Serves a directory on 127.0.0.1 (a free port) in a thread; `requests` counts the GETs
    by path."""

    def __init__(self, directory: str):
        self.requests: Counter = Counter()
        counts = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                counts[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=directory))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ArchiveServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@functools.cache
def local_cifar10_cls():
    """tfds's cifar10 builder (same name, version, features and generation code), downloading
    its archive from $URL_ENV; no checksum is registered for that address, so tfds checks none."""
    from tensorflow_datasets.core import registered
    from tensorflow_datasets.image_classification import cifar

    with registered.skip_registration():
        class LocalCifar10(cifar.Cifar10):
            name = "cifar10"

            @property
            def _cifar_info(self):
                return super()._cifar_info._replace(url=os.environ[URL_ENV])

    return LocalCifar10


class _LocalCifar10Provider:
    """A tfds builder provider (tfds.core.registered) that answers "cifar10" with LocalCifar10."""

    def has_dataset(self, name: str) -> bool:
        return name == "cifar10"

    def get_builder_cls(self, name: str):
        return local_cifar10_cls()


@contextlib.contextmanager
def use_local_cifar10(url: str):
    """tfds.builder("cifar10") is LocalCifar10 reading from `url` inside the block."""
    from tensorflow_datasets.core import registered

    before = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url
    registered.add_dataset_builder_provider(_LocalCifar10Provider(), index=0)
    try:
        yield
    finally:
        registered.reset_dataset_builder_providers()
        if before is None:
            os.environ.pop(URL_ENV)
        else:
            os.environ[URL_ENV] = before


def _read_as_a_host(coordinator: str, num_processes: int, process_id: int, data_dir: str) -> None:
    import jax

    from mobilenet_jax.data import build_dataset, prepare_data
    from mobilenet_jax.data.pipeline import host_layout
    from mobilenet_jax.train import load_config

    jax.distributed.initialize(coordinator, num_processes, process_id)
    config = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                      "configs", "cifar.py"),
                         {"data_dir": data_dir, "batch_size": 4, "shuffle_buffer": 8})
    prepare_data(config)
    data = build_dataset(config, host_layout(1))
    batch = next(data.train_batches(0))
    print(f"process {process_id}: read {data.info.num_train} train / {data.info.num_eval} eval examples, "
          f"a batch of {batch['label'].size}", flush=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with use_local_cifar10(os.environ[URL_ENV]):
        if sys.argv[1] == "--read":
            _read_as_a_host(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        else:
            module, sys.argv = sys.argv[1], sys.argv[1:]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
