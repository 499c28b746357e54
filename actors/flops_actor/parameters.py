"""Between a repository's parameters and Flower's list of numpy arrays.

Flower sends ``list[numpy.ndarray]``. Repositories return that (Keras ``get_weights()``,
sklearn ``[coef_, intercept_]``, PyTorch ``state_dict`` values as arrays), but also plain
numbers (the bundled toy example returns ``[weight, bias]`` floats), tuples, dicts or one
array. Decision: a ``Shape`` recorded from the repository's own ``get_model_parameters()``
turns the arrays back into what the repository returned, so ``set_model_parameters`` always
gets the shape it produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NDArrays = list[npt.NDArray[Any]]


class ParametersError(TypeError):
    pass


def _array(value: Any, where: str) -> npt.NDArray[Any]:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ParametersError(f"get_model_parameters(): {where} is not an array: {exc}") from exc
    if array.dtype == object:
        raise ParametersError(
            f"get_model_parameters(): {where} is not numeric (ragged lists or objects); "
            "return numpy arrays or numbers"
        )
    return array


@dataclass(frozen=True)
class Shape:
    """What ``get_model_parameters()`` returned: its container and each element's kind."""

    container: str  # "list", "tuple", "dict", "single"
    kinds: tuple[str, ...]  # per element: "array", "scalar", "list"
    keys: tuple[Any, ...] = ()

    @staticmethod
    def of(parameters: Any) -> Shape:
        if isinstance(parameters, dict):
            return Shape("dict", tuple(_kind(v) for v in parameters.values()), tuple(parameters))
        if isinstance(parameters, list | tuple):
            container = "tuple" if isinstance(parameters, tuple) else "list"
            return Shape(container, tuple(_kind(v) for v in parameters))
        return Shape("single", (_kind(parameters),))

    def restore(self, arrays: NDArrays) -> Any:
        if len(arrays) != len(self.kinds):
            raise ParametersError(
                f"received {len(arrays)} parameter arrays, the model has {len(self.kinds)}"
            )
        values = [_restore(a, k) for a, k in zip(arrays, self.kinds, strict=True)]
        if self.container == "dict":
            return dict(zip(self.keys, values, strict=True))
        if self.container == "tuple":
            return tuple(values)
        if self.container == "single":
            return values[0]
        return values


def _kind(value: Any) -> str:
    if isinstance(value, bool | int | float | np.generic):
        return "scalar"
    if isinstance(value, list | tuple):
        return "list"
    return "array"


def _restore(array: npt.NDArray[Any], kind: str) -> Any:
    if kind == "scalar":
        return array.item()
    if kind == "list":
        return array.tolist()
    return array


def to_arrays(parameters: Any) -> NDArrays:
    """The repository's parameters as the list of arrays Flower sends."""
    if isinstance(parameters, dict):
        return [_array(v, f"parameter {k!r}") for k, v in parameters.items()]
    if isinstance(parameters, list | tuple):
        return [_array(v, f"parameter {i}") for i, v in enumerate(parameters)]
    return [_array(parameters, "the value")]
