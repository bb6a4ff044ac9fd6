"""Reference weights into our parameter trees (see keras.py)."""
from mobilenet_jax.weights.keras import (
    KERAS_SEMANTICS,
    KerasLayer,
    WeightsConversionError,
    WeightsFileError,
    convert_keras,
    keras_layers,
    keras_model_overrides,
    read_keras,
)

__all__ = [
    "KERAS_SEMANTICS", "KerasLayer", "WeightsConversionError", "WeightsFileError",
    "convert_keras", "keras_layers", "keras_model_overrides", "read_keras",
]
