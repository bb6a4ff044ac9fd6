"""Configs: every recipe file loads and validates; bad configs fail before compiling."""
import glob
import os

import pytest

from tests._train_helpers import REPO, tiny_config
from mobilenet_jax.train import ConfigError, load_config, train_and_evaluate, validate_config
import mobilenet_jax.train.loop as loop

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_file_validates_on_8_devices(path):
    config = load_config(path)
    validate_config(config, num_devices=8)


@pytest.mark.parametrize("spec, key, value", [
    ("cifar.py", "dataset", "cifar10"), ("cifar.py:cifar10", "dataset", "cifar10"),
    ("cifar.py:cifar100", "dataset", "cifar100"),
    ("mobilenet_v3_imagenet.py", "model", "mobilenet_v3_large"),
    ("mobilenet_v3_imagenet.py:small", "model", "mobilenet_v3_small"),
])
def test_parameterised_config_files_through_the_command_line(spec, key, value):
    from mobilenet_jax.train.__main__ import parse_flags

    config, _ = parse_flags([f"--config={REPO}/configs/{spec}", "--workdir=unused", "--config.batch_size=64"])
    assert config[key] == value and config.batch_size == 64
    validate_config(config, num_devices=8)


def test_parameterised_config_with_an_unknown_argument_is_one_error_line(tmp_path, capsys):
    from mobilenet_jax import cli
    from mobilenet_jax.train.__main__ import main

    for spec, words in (("cifar.py:cifar1000", "the argument is one of cifar10, cifar100"),
                        ("mobilenet_v3_imagenet.py:medium", "the argument is one of large, small")):
        assert cli.run(main, [f"--config={REPO}/configs/{spec}", f"--workdir={tmp_path / 'run'}"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "run").exists()


def test_paper_recipes():
    v2 = load_config(os.path.join(REPO, "configs", "mobilenet_v2_imagenet.py"))
    assert (v2.optimizer, v2.rmsprop_decay, v2.momentum, v2.weight_decay) == ("rmsprop", 0.9, 0.9, 4e-5)
    assert (v2.learning_rate, v2.lr_decay_rate, v2.lr_decay_epochs) == (0.045, 0.98, 1.0)
    v3 = load_config(os.path.join(REPO, "configs", "mobilenet_v3_imagenet.py"))
    assert (v3.batch_size, v3.learning_rate, v3.lr_decay_epochs, v3.ema_decay) == (4096, 0.1, 3.0, 0.9999)
    assert v3.weight_decay == 1e-5 and v3.model_kwargs.bn_momentum == 0.99
    xc = load_config(os.path.join(REPO, "configs", "xception_imagenet.py"))
    assert (xc.optimizer, xc.learning_rate, xc.lr_decay_rate, xc.lr_decay_epochs) == ("sgd", 0.045, 0.94, 2.0)
    assert xc.image_size == 299


@pytest.fixture
def no_compile(monkeypatch):
    """Fails the test if the trainer gets as far as building (and compiling) the state."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the trainer reached model initialisation with a bad config")

    monkeypatch.setattr(loop, "create_train_state", forbidden)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"batch_size": 12}, "multiple of the number of devices"),
        ({"eval_batch_size": 20}, "multiple of the number of devices"),
        ({"dataset": "mnist"}, "unknown dataset"),
        ({"model": "resnet50"}, "unknown model"),
        ({"model_kwargs.widht": 0.5}, "not fields of mobilenet_v2"),
        ({"model_kwargs.num_classes": 3}, "may not set"),
        ({"lr_schedule": "linear"}, "unknown lr_schedule"),
    ],
)
def test_bad_config_fails_before_compiling(tmp_path, no_compile, overrides, message):
    config = tiny_config(num_devices=8, **overrides)
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(config, str(tmp_path))


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="no key 'batchsize'"):
        tiny_config(batchsize=8)
    config = tiny_config()
    with pytest.raises(AttributeError):
        config.batchsize = 8  # configs are locked: a typo in a config file fails too
