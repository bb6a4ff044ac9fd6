"""Test-wide setup, before JAX is first imported: 8 fake CPU devices (for the pmap tests),
a lower XLA backend optimisation level (compiles ~40% faster on CPU; the programs compute
the same functions), XLA:CPU's older loop emitters instead of its MLIR fusion emitters (the
tiny config's train step compiles in ~9.5 s instead of ~13 s on a 2-core machine, and runs no
slower), and one persistent compilation cache shared by every test and every
subprocess a test starts, so a program compiled once is loaded, not recompiled."""
import os
import tempfile

TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                  "--xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")
TEST_CACHE_DIR = os.path.join(tempfile.gettempdir(), "mobilenet_jax_test_jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", TEST_CACHE_DIR)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """One GCS server on this machine for the session (tests/_fake_gcs.py): tensorstore reads
    its address once per process, so every test of a process shares it (each its own prefix)."""
    from tests._fake_gcs import fake_gcs

    with fake_gcs(str(tmp_path_factory.mktemp("gcs_server"))) as server:
        yield server


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    """The session's GCS server, with this process's clients pointed at it for the test."""
    gcs_server.use_in_process(monkeypatch)
    return gcs_server
