"""Size accounting counted from the model itself: parameters and BatchNorm statistics from
its variable tree, multiply-adds from its traced computation (nothing is typed in).

Multiply-adds follow the papers' convention (MobileNets Sec. 3, V2 Table 4): every
convolution (depthwise included), the squeeze-excite 1x1 convs, the post-pool 1x1 convs and
the classifier count; BatchNorm, activations, pooling, SE scaling and additions do not.
They are counted for one image, by walking the jaxpr of `model.apply` and adding up
`conv_general_dilated`, `dot_general` and depthwise-conv equations (`layers.depthwise_conv2d`
is one named call; other nested jaxprs are walked into).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.layers import depthwise_conv2d


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Trainable parameters, BatchNorm statistics and multiply-adds of one network."""

    params: int
    batch_stats: int
    madds: int


#: An input side (a square image) or (height, width).
Resolution = Union[int, tuple[int, int]]


def _image(resolution: Resolution) -> jax.ShapeDtypeStruct:
    height, width = (resolution, resolution) if isinstance(resolution, (int, np.integer)) else resolution
    return jax.ShapeDtypeStruct((1, int(height), int(width), 3), jnp.float32)


def abstract_variables(model: nn.Module, resolution: Resolution) -> Any:
    """The model's variables as shapes only (no memory, no compilation)."""
    x = _image(resolution)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x, train=False), x)


def count_leaves(tree: Any) -> int:
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))


def count_params(model: nn.Module, resolution: Resolution) -> int:
    """Trainable parameters: kernels, biases, BatchNorm scale and offset."""
    return count_leaves(abstract_variables(model, resolution)["params"])


def count_madds(model: nn.Module, resolution: Resolution) -> int:
    """Multiply-adds of one forward pass (inference mode) of one image of `resolution`."""
    variables = abstract_variables(model, resolution)
    x = _image(resolution)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return jaxpr_madds(jaxpr.jaxpr)


def model_size(model: nn.Module, resolution: Optional[Resolution] = None) -> ModelSize:
    resolution = resolution or model.default_resolution
    variables = abstract_variables(model, resolution)
    return ModelSize(
        params=count_leaves(variables["params"]),
        batch_stats=count_leaves(variables.get("batch_stats", {})),
        madds=count_madds(model, resolution),
    )


def is_depthwise(eqn: Any) -> bool:
    """Whether a jaxpr equation is one `layers.depthwise_conv2d` call."""
    return eqn.params.get("name") == depthwise_conv2d.__name__


def iter_equations(jaxpr: Any) -> Iterator[Any]:
    """Every equation of a jaxpr and of its nested jaxprs, a depthwise conv as one equation."""
    for eqn in jaxpr.eqns:
        yield eqn
        if not is_depthwise(eqn):
            for sub in _sub_jaxprs(eqn.params):
                yield from iter_equations(sub)


def is_convolution(eqn: Any) -> bool:
    return eqn.primitive.name == "conv_general_dilated" or is_depthwise(eqn)


def jaxpr_madds(jaxpr: Any) -> int:
    """Sums the multiply-adds of the conv and matmul equations of a jaxpr, recursively."""
    total = 0
    for eqn in iter_equations(jaxpr):
        if eqn.primitive.name == "conv_general_dilated":
            total += _conv_madds(eqn)
        elif is_depthwise(eqn):
            total += _depthwise_madds(eqn)
        elif eqn.primitive.name == "dot_general":
            total += _dot_madds(eqn)
    return total


def _depthwise_madds(eqn: Any) -> int:
    """Output elements x kernel window (one input channel per output channel)."""
    (out,) = eqn.outvars
    kh, kw = eqn.invars[1].aval.shape[:2]
    return int(np.prod(out.aval.shape, dtype=np.int64)) * kh * kw


def _conv_madds(eqn: Any) -> int:
    """Output elements x (kernel window x input channels per group)."""
    (out,) = eqn.outvars
    rhs_shape = eqn.invars[1].aval.shape
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
    window = int(np.prod([rhs_shape[d] for d in rhs_spec[2:]]))
    in_per_group = rhs_shape[rhs_spec[1]]
    return int(np.prod(out.aval.shape, dtype=np.int64)) * window * in_per_group


def _dot_madds(eqn: Any) -> int:
    """Output elements x contracted size."""
    (out,) = eqn.outvars
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    contracted = int(np.prod([lhs_shape[d] for d in lhs_contract], dtype=np.int64))
    return int(np.prod(out.aval.shape, dtype=np.int64)) * contracted


def _sub_jaxprs(params: dict) -> list[Any]:
    found = []
    for value in params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(item, "jaxpr") and hasattr(item, "consts"):  # ClosedJaxpr
                found.append(item.jaxpr)
            elif hasattr(item, "eqns"):  # Jaxpr
                found.append(item)
    return found
