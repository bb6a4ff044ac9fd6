"""Every command fails like a tool: a user's mistake is one `error: ...` line on stderr, exit
status 1 (2 for a malformed command line), no traceback, and nothing already written is
lost; a bug of ours keeps its traceback. The trainer's rows run its real `main` in-process
(the same code `python -m mobilenet_jax.train` runs) and two rows run the real commands.
A corrupt checkpoint through the command: tests/test_train_failures.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mobilenet_jax import cli
from mobilenet_jax.errors import UserError
from tests._train_helpers import REPO, TINY_CONFIG, cli as trainer_argv, cli_env


def _snapshot(root) -> dict:
    """Every file under `root` with its bytes: what a failed command must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_one_error_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert message in errors[0], errors[0]
    assert err.rstrip().splitlines()[-1] == errors[0]


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "broken_config.py"
    path.write_text("def get_config(:\n    pass\n")
    return str(path)


TRAINER_ROWS = [
    # (id, extra argv, status, message)
    ("unknown key", ["--config.no_such_key=1"], 1, "the config has no key 'no_such_key'"),
    ("unknown model", ["--config.model=mobilenet_v9"], 1, "unknown model 'mobilenet_v9'"),
    ("impossible width", ["--config.model_kwargs.width=0.0"], 1, "width must be a finite number > 0"),
    ("batch not divisible", ["--config.num_devices=2", "--config.batch_size=15"], 1,
     "config.batch_size=15 must be a positive multiple of the number of devices (2 local"),
    ("unknown data set", ["--config.dataset=no_such_data"], 1, "unknown dataset 'no_such_data'"),
    ("negative step count", ["--config.num_train_steps=-5"], 1,
     "config.num_train_steps=-5 must be >= 0, or -1 (= use num_epochs)"),
    ("zero learning rate", ["--config.learning_rate=0.0"], 1, "config.learning_rate=0.0 must be in (0, inf)"),
    ("non-integer value", ["--config.batch_size=abc"], 2, "flag --config.batch_size=abc"),
    ("unknown flag", ["--no_such_flag"], 2, "Unknown command line flag 'no_such_flag'"),
]


@pytest.mark.parametrize("argv, status, message", [r[1:] for r in TRAINER_ROWS], ids=[r[0] for r in TRAINER_ROWS])
def test_trainer_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, argv, status, message):
    from mobilenet_jax.train.__main__ import main

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("written by an earlier run")
    before = _snapshot(tmp_path)
    assert cli.run(main, [f"--config={TINY_CONFIG}", f"--workdir={workdir}", *argv]) == status
    _assert_one_error_line(capsys.readouterr().err, message)
    assert _snapshot(tmp_path) == before


def test_trainer_unloadable_config_file_and_workdir_that_is_a_file(tmp_path, capsys, bad_config):
    from mobilenet_jax.train.__main__ import main

    assert cli.run(main, [f"--config={bad_config}", f"--workdir={tmp_path / 'run'}"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "cannot load the config file: SyntaxError")
    assert cli.run(main, [f"--config={tmp_path / 'missing.py'}", f"--workdir={tmp_path / 'run'}"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "No such file or directory")
    assert not (tmp_path / "run").exists()

    a_file = tmp_path / "results.txt"
    a_file.write_text("precious")
    assert cli.run(main, [f"--config={TINY_CONFIG}", f"--workdir={a_file}"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "names an existing file; give a directory")
    assert a_file.read_text() == "precious"


def test_experiment_bad_set_is_one_line_before_any_folder(tmp_path, capsys):
    from experiments import ablation, v2_bottleneck

    def run(*argv):
        return cli.run(lambda a: ablation.main(v2_bottleneck.ABLATION, a), ["--smoke", "--out", str(tmp_path), *argv])

    assert run("--set", "batch_size") == 2
    _assert_one_error_line(capsys.readouterr().err, "--set wants KEY=VALUE, got 'batch_size'")
    assert run("--set", "no_such_key=1") == 1
    _assert_one_error_line(capsys.readouterr().err, "config has no key 'no_such_key'")
    assert run("--set", "num_train_steps=-5") == 1
    _assert_one_error_line(capsys.readouterr().err, "config.num_train_steps=-5 must be >= 0")
    assert run("--seeds", "x") == 2
    _assert_one_error_line(capsys.readouterr().err, "argument --seeds: invalid int value: 'x'")
    assert run("--from-runs") == 1
    _assert_one_error_line(capsys.readouterr().err, "no finished run (runs/<id>/final.json) under")
    assert list(tmp_path.iterdir()) == []
    from experiments import detection_backbones

    assert cli.run(lambda a: ablation.main(detection_backbones.ABLATION, a),
                   ["--smoke", "--out", str(tmp_path), "--set", "embedded_detection_max_objects=9"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "config.embedded_detection_max_objects=9 exceeds the 8 object slots")
    assert list(tmp_path.iterdir()) == []


def test_weights_and_inspection_commands(tmp_path, capsys):
    from mobilenet_jax import convert, evaluate, summary

    assert cli.run(evaluate.main, ["--checkpoint", str(tmp_path / "nowhere")]) == 1
    _assert_one_error_line(capsys.readouterr().err, "has no config.json")
    assert cli.run(convert.main, ["--keras", str(tmp_path / "none.h5"), "--model", "mobilenet_v2",
                                  "--out", str(tmp_path / "out")]) == 1
    _assert_one_error_line(capsys.readouterr().err, "no such file")
    assert cli.run(convert.main, ["--keras", "x.h5", "--model", "mobilenet_v2", "--minimalistic",
                                  "--out", str(tmp_path / "out")]) == 2
    _assert_one_error_line(capsys.readouterr().err, "--minimalistic is a MobileNetV3 variant")
    assert cli.run(summary.main, ["--model", "mobilenet_v9"]) == 2
    _assert_one_error_line(capsys.readouterr().err, "no variants for model 'mobilenet_v9'")
    assert not (tmp_path / "out").exists()


def test_bugs_keep_their_traceback_and_verbose_shows_it(capsys, monkeypatch):
    def buggy(argv):
        raise KeyError("a bug of ours")

    with pytest.raises(KeyError):
        cli.run(buggy, [])

    def mistaken(argv):
        raise UserError("the user's mistake\nwith a second line")

    assert cli.run(mistaken, []) == 1
    assert capsys.readouterr().err == "error: the user's mistake; with a second line\n"
    assert cli.run(mistaken, ["--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("error: the user's mistake; with a second line\n")
    monkeypatch.setenv(cli.VERBOSE_ENV, "1")
    assert cli.run(mistaken, []) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv, status, message, fresh", [
    (lambda tmp: trainer_argv(str(tmp / "run"), "--config.no_such_key=1"), 1, "the config has no key 'no_such_key'", "run"),
    (lambda tmp: [sys.executable, "-m", "experiments.v2_bottleneck", "--smoke", "--out", str(tmp / "out"),
                  "--set", "model_kwargs.width=-1"], 1, "width must be a finite number > 0", "out"),
], ids=["trainer", "experiment"])
def test_real_commands(tmp_path, argv, status, message, fresh):
    proc = subprocess.run(argv(tmp_path), env=cli_env(2), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == status, proc.stderr[-3000:]
    _assert_one_error_line(proc.stderr, message)
    assert not os.path.exists(tmp_path / fresh)
