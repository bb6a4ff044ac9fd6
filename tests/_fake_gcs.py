"""A Google Cloud Storage server on this machine for tests: gcp-storage-emulator (pure Python,
in memory) on a free port, and the environment that points every client of the project at
it: epath through gcsfs (EPATH_USE_TF=0; TensorFlow's GCS client has no endpoint setting),
orbax's arrays through tensorstore's own GCS client. Subprocesses given `env()` and this
process (after `use_in_process`) share one bucket, as the hosts of a pod share theirs.

One gap of the emulator is filled here: GCS answers a media download with the object's
generation in `x-goog-generation`, which tensorstore requires (orbax's OCDBT manifests are
read back with it; without it: "Malformed StorageGeneration"); the emulator leaves it out."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

BUCKET = "pod-bucket"


class FakeGcs:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return {
            "EPATH_USE_TF": "0",  # epath serves gs:// with gcsfs, which honours the next line
            "STORAGE_EMULATOR_HOST": self.url,
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "NO_GCE_CHECK": "True",  # google-auth: no metadata-server probe for credentials
            "GOOGLE_CLOUD_PROJECT": "test-project",
        }

    def use_in_process(self, monkeypatch) -> None:
        from etils.epath import gpath

        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        # epath decides "TensorFlow or fsspec" once per process (a cached function): a test
        # that used gs:// earlier in this process may have fixed it on TensorFlow.
        monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)

    @staticmethod
    def forget_listings() -> None:
        """Drops gcsfs's cached listings in this process: other processes wrote since."""
        from etils.epath import backend

        backend.fsspec_backend.fs(f"gs://{BUCKET}").invalidate_cache()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fake_gcs(cwd: str) -> Iterator[FakeGcs]:
    """The server, with bucket BUCKET, in memory (nothing on disk), for the block's duration."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(port)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.1)
        yield FakeGcs(port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _serve(port: int) -> None:
    import logging

    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.server import create_server

    download = objects.download

    def download_with_generation(request, response, storage, *args, **kwargs):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj["metageneration"])
        except objects.NotFound:
            pass
        return download(request, response, storage, *args, **kwargs)

    objects.download = download_with_generation  # `get` (alt=media) looks it up per call
    logging.disable(logging.CRITICAL)
    # socketserver prints a traceback for each client that hangs up early (tensorstore and
    # gcsfs do, routinely): noise, not failures.
    sys.stderr = open(os.devnull, "w")
    create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET).run()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
