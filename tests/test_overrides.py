"""Config overrides (mobilenet_jax/overrides.py): KEY=VALUE words, dotted keys, whole sub-dicts."""
import os

import pytest

from mobilenet_jax.errors import UsageError
from mobilenet_jax.overrides import apply_overrides, parse_assignments
from mobilenet_jax.train import ConfigError, default_config, load_config
from tests._train_helpers import REPO

EMBEDDED = os.path.join(REPO, "configs", "embedded.py")


def test_parse_assignments():
    assert parse_assignments(["batch_size=256", "dataset=cifar10", "model_kwargs.width=0.5",
                              "model_kwargs={'width': 1.0}", "eval_split="]) == {
        "batch_size": 256, "dataset": "cifar10", "model_kwargs.width": 0.5,
        "model_kwargs": {"width": 1.0}, "eval_split": ""}
    for bad in ("oops", "=3"):
        with pytest.raises(UsageError, match="--set wants KEY=VALUE"):
            parse_assignments([bad])


def test_dotted_keys_and_free_form_model_kwargs_as_load_config_applies_them():
    overrides = {"batch_size": 64, "model_kwargs.width": 0.5, "model_kwargs.se_ratio": 0.25,
                 "distributed.coordinator_address": "10.0.0.1:1234"}
    config = apply_overrides(load_config(EMBEDDED), overrides)
    assert config.to_dict() == load_config(EMBEDDED, overrides).to_dict()
    assert config.batch_size == 64 and config.model_kwargs.width == 0.5 and config.model_kwargs.se_ratio == 0.25


def test_a_whole_sub_dict_is_replaced_before_the_dotted_keys_under_it():
    for overrides in ({"model_kwargs.dropout_rate": 0.1, "model_kwargs": {"width": 2.0}},
                      {"model_kwargs": {"width": 2.0}, "model_kwargs.dropout_rate": 0.1}):
        config = apply_overrides(load_config(EMBEDDED), overrides)
        assert config.model_kwargs.to_dict() == {"width": 2.0, "dropout_rate": 0.1}


@pytest.mark.parametrize("key, missing", [("batch_sise", "batch_sise"), ("optim.lr", "optim"),
                                          ("batch_size.x", "batch_size"), ("distributed.nope", "nope")])
def test_unknown_keys_are_a_config_error_or_skipped_on_request(key, missing):
    with pytest.raises(ConfigError, match=f"override '{key}': config has no key '{missing}'"):
        apply_overrides(default_config(), {key: 1})
    config = apply_overrides(default_config(), {key: 1, "seed": 7}, unknown="ignore")
    assert config.seed == 7 and config.to_dict() == apply_overrides(default_config(), {"seed": 7}).to_dict()
