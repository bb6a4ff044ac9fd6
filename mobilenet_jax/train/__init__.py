"""The trainer (see loop.py): `train_and_evaluate(config, workdir)` plus the pieces it is
made of, importable on their own for experiments and benchmarks."""
from mobilenet_jax.train.checkpoint import CheckpointError, Checkpoints, load_workdir_config, restore_variables
from mobilenet_jax.train.config import ConfigError, default_config, load_config, validate_config
from mobilenet_jax.train.loop import NonFiniteLossError, build_model, train_and_evaluate
from mobilenet_jax.train.metrics import MetricWriter, read_metrics
from mobilenet_jax.train.optim import build_optimizer, learning_rate_schedule, resolve_durations, tf_rmsprop
from mobilenet_jax.train.state import TrainState, create_train_state
from mobilenet_jax.train.steps import make_train_step, pmap_train_step

__all__ = [
    "CheckpointError", "Checkpoints", "ConfigError", "MetricWriter", "NonFiniteLossError",
    "TrainState", "build_model", "build_optimizer", "create_train_state", "default_config",
    "learning_rate_schedule", "load_config", "load_workdir_config", "make_train_step",
    "pmap_train_step", "read_metrics", "resolve_durations", "restore_variables", "tf_rmsprop",
    "train_and_evaluate", "validate_config",
]
