"""tfds data sets on first contact (mobilenet_jax/data/prepare.py), offline: tfds's own cifar10
builder downloads a tiny archive from a server on 127.0.0.1 (tests/_tfds_local.py) and the
trainer trains on it with no manual step; two processes prepare it once; a set that cannot be
had (not prepared with downloading forbidden, a manual set without its archives, a download
that fails on this machine without internet, a half-prepared directory) is one `error:` line
that says what to do, and leaves no workdir behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mobilenet_jax import cli
from tests._tfds_local import ARCHIVE, NUM_TEST, TRAIN_PER_BATCH, URL_ENV, ArchiveServer, use_local_cifar10, write_archive
from tests._train_helpers import REPO, cli_env, free_port
from tests.conftest import TEST_CACHE_DIR

CONFIGS = os.path.join(REPO, "configs")
# configs/cifar.py's data and recipe at the size of a test: 2 steps of the cheapest network to
# compile (MobileNetV1 0.25, float32) on the tiny archive.
SMALL_RUN = ["--config.model=mobilenet_v1", "--config.model_kwargs.width=0.25", "--config.dtype=float32", "--config.batch_size=8", "--config.eval_batch_size=8",
             "--config.num_train_steps=2", "--config.warmup_epochs=0", "--config.shuffle_buffer=8",
             "--config.log_every_steps=1", "--config.num_devices=1", "--config.progress_bar=false",
             "--config.tensorboard=false"]


def _one_error_line(err: str) -> str:
    """The one `error: ...` line, last on stderr, with no traceback."""
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err[-3000:]
    return errors[0]


@pytest.fixture
def local_source(tmp_path):
    """The tiny CIFAR-10 archive on 127.0.0.1 and, in this process, tfds's cifar10 reading it."""
    source = tmp_path / "source"
    source.mkdir()
    write_archive(str(source))
    with ArchiveServer(str(source)) as server, use_local_cifar10(f"{server.url}/{ARCHIVE}"):
        yield server


def _env_with(server, **extra) -> dict:
    return {**cli_env(1), URL_ENV: f"{server.url}/{ARCHIVE}", **extra}


def test_cifar10_config_trains_from_a_local_source_with_no_manual_step(tmp_path, capsys, local_source):
    from mobilenet_jax.train.__main__ import main

    data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
    status = cli.run(main, [f"--config={CONFIGS}/cifar.py:cifar10", f"--workdir={workdir}", f"--config.data_dir={data_dir}",
                            f"--config.compilation_cache_dir={TEST_CACHE_DIR}", *SMALL_RUN])
    err = capsys.readouterr().err
    assert status == 0, err[-4000:]
    assert local_source.requests == {f"/{ARCHIVE}": 1}
    assert f"cifar10 is not prepared in {data_dir}: preparing it from its download (first use)" in err
    assert "Dl Completed" in err  # tfds's own progress display
    assert (data_dir / "cifar10" / "3.0.2" / "dataset_info.json").is_file()
    assert f'"eval_num_examples": {NUM_TEST}' in err and '"step": 2' in err
    assert (workdir / "config.json").is_file()


def test_two_processes_prepare_once_and_both_read(tmp_path, local_source):
    data_dir, port = tmp_path / "tfds", free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests._tfds_local", "--read", f"127.0.0.1:{port}", "2", str(i), str(data_dir)],
        env=_env_with(local_source), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    report = "\n".join(f"--- process {i} (exit {p.returncode}) ---\n{out[-2500:]}"
                       for i, (p, out) in enumerate(zip(procs, outputs)))
    assert all(p.returncode == 0 for p in procs), report
    assert local_source.requests == {f"/{ARCHIVE}": 1}, report  # process 1 waited, then read
    assert "preparing it from its download" in outputs[0] and "preparing it" not in outputs[1], report
    assert "waiting for process 0: preparing cifar10" in outputs[1], report
    for i, out in enumerate(outputs):
        assert f"process {i}: read {5 * TRAIN_PER_BATCH} train / {NUM_TEST} eval examples, a batch of 2" in out, report


def test_prepare_command_reuses_prepared_data_and_names_a_half_prepared_directory(tmp_path, capsys, caplog,
                                                                                     local_source):
    from mobilenet_jax.data.__main__ import main
    from mobilenet_jax.data.prepare import DataError, ensure_prepared

    data_dir = tmp_path / "tfds"
    version_dir = data_dir / "cifar10" / "3.0.2"
    stale = data_dir / "cifar10" / "incomplete.Q7ZK2A_3.0.2"  # a preparation that was killed: named, not read
    stale.mkdir(parents=True)
    for _ in range(2):  # the second time finds it prepared: no download
        assert cli.run(main, ["prepare", "cifar10", "--data-dir", str(data_dir)]) == 0
        assert f"cifar10 3.0.2 is prepared in {version_dir} (train 40, test 16 examples)" in capsys.readouterr().out
    assert local_source.requests == {f"/{ARCHIVE}": 1}
    assert f"cifar10: an interrupted preparation left {stale} (not read; delete it to free its space)" in caplog.text

    (version_dir / "cifar10-test.tfrecord-00000-of-00001").unlink()  # an interrupted copy
    with pytest.raises(DataError, match=f"cifar10 in {version_dir} is half-prepared \\(shard files listed in its "
                                        r"dataset_info.json are missing \(test: 1 of 1\)"):
        ensure_prepared("cifar10", str(data_dir))
    (version_dir / "dataset_info.json").unlink()
    assert cli.run(main, ["prepare", "cifar10", "--data-dir", str(data_dir)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"cifar10 in {version_dir} is half-prepared (it has no dataset_info.json" in line
    assert f"Delete that directory and prepare it again: python -m mobilenet_jax.data prepare cifar10 --data-dir {data_dir}" in line
    assert local_source.requests == {f"/{ARCHIVE}": 1}  # named, not read nor prepared over


def test_download_forbidden_is_one_line_and_leaves_no_workdir(tmp_path, capsys, local_source):
    from mobilenet_jax.train.__main__ import main

    data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
    stale = data_dir / "cifar10" / "incomplete.Q7ZK2A_3.0.2"  # a preparation that was killed
    stale.mkdir(parents=True)
    status = cli.run(main, [f"--config={CONFIGS}/cifar.py:cifar10", f"--workdir={workdir}", f"--config.data_dir={data_dir}",
                            "--config.data_download=false"])
    assert status == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == (f"error: cifar10 is not prepared in {data_dir}; an interrupted preparation left {stale}: delete it, "
                    "and config.data_download=False forbids preparing it in this run: prepare it first with "
                    f"python -m mobilenet_jax.data prepare cifar10 --data-dir {data_dir}")
    assert not workdir.exists() and local_source.requests == {}


@pytest.mark.parametrize("download", [True, False])
def test_manual_set_names_its_archives_the_directory_and_the_command(tmp_path, capsys, download):
    from mobilenet_jax.train.__main__ import main

    data_dir, workdir, manual = tmp_path / "tfds", tmp_path / "run", tmp_path / "archives"
    argv = [f"--config={CONFIGS}/mobilenet_v2_imagenet.py", f"--workdir={workdir}", f"--config.data_dir={data_dir}",
            f"--config.data_download={download}"] + ([f"--config.data_manual_dir={manual}"] if download else [])
    assert cli.run(main, argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    where = manual if download else data_dir / "downloads" / "manual"  # tfds's default
    assert f"error: imagenet2012 is not prepared in {data_dir}, and tfds cannot download it: download its archives " \
           f"by hand into {where} (tfds: manual_dir should contain two files: ILSVRC2012_img_train.tar and " \
           "ILSVRC2012_img_val.tar." in line
    command = f"python -m mobilenet_jax.data prepare imagenet2012 --data-dir {data_dir}"
    assert command + (f" --manual-dir {manual}" if download else "") in line
    assert ("config.data_download=False: this run prepares no data" in line) is not download
    assert not workdir.exists()


def test_cifar10_config_offline_fails_fast_with_one_line(tmp_path):
    """configs/cifar.py as given (data_dir empty: tfds's default, here $TFDS_DATA_DIR) on this
    machine, which reaches no data host: tfds's download fails after a few quick retries."""
    workdir = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet_jax.train", f"--config={CONFIGS}/cifar.py:cifar10", f"--workdir={workdir}"],
        env={**cli_env(1), "TFDS_DATA_DIR": str(tmp_path / "tfds")}, cwd=REPO, capture_output=True, text=True,
        timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: cifar10 is not prepared in {tmp_path / 'tfds'} and downloading it failed ("), line
    assert ("on a machine that reaches the data's host run python -m mobilenet_jax.data prepare cifar10 --data-dir DIR "
            f"and copy DIR/cifar10 into {tmp_path / 'tfds'}") in line
    assert not workdir.exists()
    assert elapsed < 60, f"{elapsed:.0f} s: tfds's retries are not bounded"


def test_evaluate_and_the_experiments_take_the_same_path(tmp_path, capsys):
    """COCO with downloading forbidden: evaluate (a detector's workdir) and an experiment sweep
    answer with the trainer's line, before the experiment makes any folder."""
    from experiments import ablation, detection_backbones
    from mobilenet_jax import evaluate
    from mobilenet_jax.train import load_config

    data_dir, out = tmp_path / "tfds", tmp_path / "out"
    expected = (f"error: coco/2017 is not prepared in {data_dir}, and config.data_download=False forbids preparing "
                f"it in this run: prepare it first with python -m mobilenet_jax.data prepare coco/2017 --data-dir {data_dir}")
    workdir = tmp_path / "detector"
    workdir.mkdir()
    config = load_config(f"{CONFIGS}/ssdlite_coco.py", {"data_dir": str(data_dir), "data_download": False})
    (workdir / "config.json").write_text(config.to_json())
    assert cli.run(evaluate.main, ["--checkpoint", str(workdir)]) == 1
    assert _one_error_line(capsys.readouterr().err) == expected

    argv = ["--smoke", "--out", str(out), "--dataset", "coco/2017", "--set", f"data_dir={data_dir}", "data_download=False"]
    assert cli.run(lambda a: ablation.main(detection_backbones.ABLATION, a), argv) == 1
    assert _one_error_line(capsys.readouterr().err) == expected
    assert not out.exists() and not data_dir.exists()


class _KeyValueStore:
    """jax.distributed's key-value store as `primary_first` uses it, in memory."""

    def __init__(self, preset: dict | None = None):
        self.values = dict(preset or {})

    def key_value_set(self, key: str, value: str) -> None:
        self.values[key] = value

    def blocking_key_value_get(self, key: str, timeout_in_ms: int) -> str:
        return self.values[key]


@pytest.mark.parametrize("process_index", [0, 1])
def test_primary_first_gives_every_process_process_zeros_one_line(monkeypatch, process_index):
    """Process 0 publishes its outcome (its user error's message); the others raise that message
    without running the work, and a bug on process 0 stays a bug (no UserError) everywhere."""
    import jax
    from jax._src import distributed as jax_distributed

    from mobilenet_jax.errors import UserError
    from mobilenet_jax.train import distributed

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: process_index)
    monkeypatch.setattr(distributed, "_primary_first_calls", iter(range(3)))
    ran = []

    def forbidden():
        ran.append("forbidden")
        raise UserError("cifar10 is not prepared in D")

    def buggy():
        ran.append("buggy")
        raise KeyError("bug")

    store = _KeyValueStore({} if process_index == 0 else {
        "mobilenet_jax/primary_first/0": "ok",
        "mobilenet_jax/primary_first/1": "error:cifar10 is not prepared in D",
        "mobilenet_jax/primary_first/2": "bug:KeyError: 'bug'"})
    monkeypatch.setattr(jax_distributed.global_state, "client", store)
    distributed.primary_first("preparing", lambda: ran.append("fine"))
    with pytest.raises(UserError, match="^cifar10 is not prepared in D"):
        distributed.primary_first("preparing cifar10", forbidden)
    with pytest.raises(Exception) as bug:
        distributed.primary_first("preparing", buggy)
    assert not isinstance(bug.value, UserError)
    if process_index == 0:
        assert ran == ["fine", "forbidden", "buggy"]
        assert store.values == {"mobilenet_jax/primary_first/0": "ok",
                                "mobilenet_jax/primary_first/1": "error:cifar10 is not prepared in D",
                                "mobilenet_jax/primary_first/2": "bug:KeyError: 'bug'"}
    else:
        assert ran == []


def test_coco_config_offline_is_one_line_last_and_leaves_no_workdir(tmp_path, capsys):
    """The README's COCO command with nothing prepared on this machine without internet: tfds fetches
    5 archives at once; the first failure is the line, and the others' retries print nothing after it."""
    from mobilenet_jax.train.__main__ import main

    data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
    assert cli.run(main, [f"--config={CONFIGS}/ssdlite_coco.py", f"--workdir={workdir}",
                          f"--config.data_dir={data_dir}"]) == 1
    time.sleep(3)  # the other download threads' last retries
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: coco/2017 is not prepared in {data_dir} and downloading it failed ("), line
    assert f"python -m mobilenet_jax.data prepare coco/2017 --data-dir DIR and copy DIR/coco into {data_dir}" in line
    assert not workdir.exists()
