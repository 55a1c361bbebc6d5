"""Nested training state (optimizer, scheduler, RNG states) as safetensors plus JSON, never pickle.

`split(value)` turns a tree of dicts, lists, tuples, numbers, strings, None, torch tensors and NumPy
arrays into `(tensors, skeleton)`: the tensors by name for `safetensors`, and a JSON skeleton that
names them. `join(tensors, skeleton)` builds the tree back. Reading either part constructs nothing
but those plain types: a checkpoint file is data, so a tampered one can be refused, never executed
(a pickle's `__reduce__` runs code the moment `torch.load(weights_only=False)` reads it).

Markers in the skeleton: `{"$tensor": name}`, `{"$tuple": [...]}`, `{"$ndarray": [...], "dtype": d}`,
`{"$dict": [[key, value], ...]}` for dicts whose keys are not all strings (an optimizer's state is
keyed by parameter index). Any other dict with a `$` key is refused, so a marker cannot be smuggled.
"""

from __future__ import annotations

from typing import Any

import torch

MARKERS = ("$tensor", "$tuple", "$ndarray", "$dict")
_NUMPY_DTYPES = ("uint32", "int64", "float64")  # what NumPy's RNG state holds


class StateError(ValueError):
    """A stored state that is not what this code writes."""


def split(value: Any) -> tuple[dict[str, torch.Tensor], Any]:
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {"$tensor": path}
        if type(node).__module__ == "numpy" and hasattr(node, "tolist"):
            if getattr(node, "ndim", 0) == 0:
                return node.item()
            return {"$ndarray": node.tolist(), "dtype": str(node.dtype)}
        if isinstance(node, tuple):
            return {"$tuple": [walk(item, f"{path}.{i}") for i, item in enumerate(node)]}
        if isinstance(node, list):
            return [walk(item, f"{path}.{i}") for i, item in enumerate(node)]
        if isinstance(node, dict):
            if all(isinstance(key, str) and not key.startswith("$") for key in node):
                return {key: walk(item, f"{path}.{key}") for key, item in node.items()}
            if not all(isinstance(key, int | str) for key in node):
                raise StateError(f"cannot store a dict keyed by {type(next(iter(node))).__name__} at '{path}'")
            return {"$dict": [[key, walk(item, f"{path}.{key}")] for key, item in node.items()]}
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise StateError(f"cannot store a {type(node).__name__} at '{path}' (only plain data and tensors)")

    skeleton = walk(value, "s")
    return tensors, skeleton


def join(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    used: set[str] = set()

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, list):
            return [walk(item, f"{where}[{i}]") for i, item in enumerate(node)]
        if isinstance(node, dict):
            markers = [key for key in node if key.startswith("$")]
            if not markers:
                return {key: walk(item, f"{where}.{key}") for key, item in node.items()}
            marker = markers[0]
            if len(markers) != 1 or marker not in MARKERS:
                raise StateError(f"unknown marker {markers} at {where}")
            body = node[marker]
            if marker == "$tensor":
                if not isinstance(body, str) or body not in tensors:
                    raise StateError(f"{where} names a tensor the file does not hold ({body!r})")
                used.add(body)
                return tensors[body]
            if marker == "$tuple" and isinstance(body, list):
                return tuple(walk(item, f"{where}[{i}]") for i, item in enumerate(body))
            if marker == "$ndarray" and isinstance(body, list) and node.get("dtype") in _NUMPY_DTYPES:
                import numpy as np

                return np.asarray(body, dtype=node["dtype"])
            if marker == "$dict" and isinstance(body, list) and all(_plain_pair(pair) for pair in body):
                return {key: walk(item, f"{where}.{key}") for key, item in body}
            raise StateError(f"malformed {marker} at {where}")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise StateError(f"unexpected {type(node).__name__} at {where}")

    value = walk(skeleton, "state")
    if unused := set(tensors) - used:
        raise StateError(f"the file holds tensors no state names (first: {sorted(unused)[0]})")
    return value


def _plain_pair(pair: Any) -> bool:
    key = pair[0] if isinstance(pair, list) and len(pair) == 2 else None
    return isinstance(key, int | str) and not isinstance(key, bool)
