"""Config overrides, one way for every caller: dotted keys applied to an ml_collections config,
and KEY=VALUE words read from a command line into such keys.

`apply_overrides(config, {"batch_size": 64, "model_kwargs.width": 0.35})` sets, in place:
- a dotted key walks into the nested ConfigDicts; a key the config lacks is a ConfigError,
  except under `model_kwargs` (free-form there: the model checks its own fields);
- a mapping given for a ConfigDict key (`{"model_kwargs": {...}}`) replaces that whole
  subtree; shallower keys go first, so dotted keys under it apply on top of the replacement
  whatever their order in the mapping;
- `unknown="ignore"` skips the keys the config lacks instead (a config.json written by
  another version of the trainer).
`parse_assignments(["batch_size=256", "model_kwargs.width=0.5"])` -> {"batch_size": 256,
"model_kwargs.width": 0.5}: values are Python literals, else strings.
"""
from __future__ import annotations

import ast
from typing import Any, Literal, Mapping, Sequence

import ml_collections

from mobilenet_jax.errors import UsageError

FREE_FORM = ("model_kwargs",)  # sub-configs whose keys are not fixed by the defaults


def parse_assignments(items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """KEY=VALUE words -> {key: value}; a word without `=` or key is a UsageError naming `flag`."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} wants KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any], *,
                    unknown: Literal["error", "ignore"] = "error") -> ml_collections.ConfigDict:
    """Sets `overrides` (dotted keys) in `config` and returns it; see the module doc."""
    from mobilenet_jax.train.config import ConfigError  # train.config may use this module

    for key, value in sorted(overrides.items(), key=lambda kv: kv[0].count(".")):
        *parents, leaf = key.split(".")
        node, missing = config, None
        for p in parents:
            if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
                missing = p  # absent, or a value with no keys under it
                break
            node = node[p]
        if missing is None and leaf not in node and not (parents and parents[-1] in FREE_FORM):
            missing = leaf
        if missing is not None:
            if unknown == "ignore":
                continue
            raise ConfigError(f"override {key!r}: config has no key {missing!r}")
        if isinstance(value, Mapping) and isinstance(node.get(leaf), ml_collections.ConfigDict):
            value = ml_collections.ConfigDict(dict(value))
        if leaf in node:
            node[leaf] = value
        else:
            with node.unlocked():
                node[leaf] = value
    return config

