"""mobilenet_jax: MobileNetV1/V2/V3 and Xception in JAX/Flax, exact to the papers and Keras."""
from mobilenet_jax.models import create_model, list_models, model_fields
from mobilenet_jax.models.registry import ModelConfigError

__all__ = ["create_model", "list_models", "model_fields", "ModelConfigError"]
