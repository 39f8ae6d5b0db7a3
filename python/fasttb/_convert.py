"""Argument conversion shared by every ``add_*`` method.

The rules are the stock writer's (``make_np`` and friends); the errors are clearer. Each error
names the argument, is a ``TypeError`` or ``ValueError`` as Python convention asks, and is also an
instance of the exception type the stock writer raises for the same input, so existing
``except`` clauses keep working. torch is only imported when a value is a torch tensor.
"""

from __future__ import annotations

import operator
import os
import sys
import time
from typing import Any

import numpy as np

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def require(module: str, what: str, package: str) -> Any:
    """Import an optional dependency for ``what``, or raise ModuleNotFoundError saying which
    package to install (the stock writers raise it bare)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0]:
            raise  # the package is there, and something it needs is not
        raise ModuleNotFoundError(f"{what} needs {package} (pip install {package})", name=exc.name) from None


class ArgumentTypeError(TypeError, NotImplementedError):
    """An argument of a type the writer cannot log (the stock writer raises NotImplementedError)."""


class ArgumentShapeError(ValueError, AssertionError):
    """An array argument of the wrong shape (the stock writer raises AssertionError)."""


class ArgumentOverflowError(ValueError, OverflowError):
    """A number too large for a float (the stock writer raises OverflowError)."""


class ArgumentZeroDivisionError(ValueError, ZeroDivisionError):
    """A zero where the stock writer divides by it (and raises ZeroDivisionError)."""


class ArgumentAttributeError(TypeError, AttributeError):
    """An argument of the wrong type where the stock writer calls a method it lacks (and
    raises AttributeError): a tag that is not a str, a mapping that is not one."""


class ArgumentValueTypeError(TypeError, ValueError):
    """A value that is no number, of a type the stock writer turns into one (a str, say) and
    then fails on: it raises TypeError or ValueError by case, so this is both."""


class ArgumentIndexError(ValueError, IndexError):
    """An array with too few dimensions or elements where the stock writer indexes past them
    (and raises IndexError)."""


def to_str(value: Any, argument: str) -> str:
    """A str argument the stock writer calls str methods on: anything else is refused with
    ArgumentAttributeError, as there."""
    if isinstance(value, str):
        return str(value)
    raise ArgumentAttributeError(f"{argument}: expected a str, got {type(value).__name__}")


def to_joined_str(value: Any, argument: str) -> str:
    """A str argument the stock writer joins to another str with ``+``: anything else, ``None``
    and bytes included, is refused with TypeError, as there."""
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"{argument}: expected a str, got {type(value).__name__}")


def worker_path(path: str) -> bytes:
    """`path` for the worker, which opens it after the call has returned: made absolute now, as
    the stock writer's own open would see it, whatever the working directory is by then."""
    return os.fsencode(os.path.abspath(path))


def _is_torch_tensor(value: Any) -> bool:
    # Never imports torch: without it imported there is no tensor. Subclasses defined outside
    # torch (MONAI's MetaTensor, say) are tensors too.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def make_np(value: Any, argument: str = "value") -> np.ndarray:
    """Convert ``value`` to a numpy array the way the stock writer does.

    numpy arrays pass through unchanged; anything numpy treats as a scalar becomes a 1-element
    array; torch tensors on any device are detached and copied to host memory, bfloat16 by way of
    float16 as in the stock writer. ``np.matrix`` becomes a plain array (the stock writer fails
    on it: its 2-D-only arithmetic breaks the reshapes). Lists, tuples and ``None`` are refused.
    """
    if isinstance(value, np.ndarray):
        return np.asarray(value) if isinstance(value, np.matrix) else value
    if np.isscalar(value):
        return np.array([value])
    if _is_torch_tensor(value):
        import torch

        if value.device.type == "meta":
            raise ValueError(f"{argument}: a tensor on the meta device has no values to log")
        if value.dtype == torch.bfloat16:
            value = value.to(torch.float16)
        return value.detach().cpu().numpy()
    raise ArgumentTypeError(
        f"{argument}: expected a number, numpy array or torch tensor, got {type(value).__name__}"
    )


def to_tag(tag: Any, argument: str = "tag") -> str:
    """A summary tag as text: ``str`` as is, UTF-8 ``bytes`` decoded, ``None`` as empty."""
    if type(tag) is str:
        return tag
    if isinstance(tag, str):
        return str(tag)
    if tag is None:
        return ""
    if isinstance(tag, bytes):
        try:
            return tag.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{argument}: bytes that are not valid UTF-8: {exc}") from None
    raise TypeError(f"{argument}: expected a str, got {type(tag).__name__}")


def to_step(global_step: Any, argument: str = "global_step") -> int:
    """``int(global_step)`` (0 for ``None``), checked to fit the int64 ``Event.step`` field."""
    if global_step is None:
        return 0
    try:
        step = int(global_step)
    except (TypeError, ValueError):
        raise ArgumentValueTypeError(f"{argument}: expected an integer, got {global_step!r}") from None
    except OverflowError:  # int(inf)
        raise ArgumentOverflowError(f"{argument}: expected an integer, got {global_step!r}") from None
    if not _INT64_MIN <= step <= _INT64_MAX:
        raise ValueError(f"{argument}: {step} is out of the int64 range of Event.step")
    return step


def to_field_step(value: Any, argument: str) -> int:
    """A step the stock writer hands to protobuf's int64 field as it is: an int or a numpy
    integer (anything with ``__index__``); protobuf refuses a bool, a float or a str with
    TypeError, so this does too."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{argument}: expected an integer, got {value!r}")
    return to_step(operator.index(value), argument)


def to_walltime(walltime: Any, argument: str = "walltime") -> float:
    """Seconds since the epoch: ``walltime`` as a float, or now when it is ``None``."""
    if walltime is None:
        return time.time()
    if isinstance(walltime, (str, bytes)):
        raise TypeError(f"{argument}: expected a number of seconds, got {type(walltime).__name__}")
    try:
        return float(walltime)
    except (TypeError, ValueError, RuntimeError):  # (RuntimeError: a tensor of several elements)
        # The stock writer raises TypeError for most, ValueError for arrays of several numbers.
        raise ArgumentValueTypeError(f"{argument}: expected a number of seconds, got {walltime!r}") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: {walltime!r} is too large for a float") from None


def to_scalar(value: Any, argument: str = "scalar_value") -> float:
    """One number as a Python float, accepting whatever the stock writer accepts.

    Python and numpy numbers, numeric strings (``"1.5"``, as the stock writer does), and arrays
    or tensors holding exactly one element.
    """
    if type(value) is float:
        return value
    array = make_np(value, argument).squeeze()
    if array.ndim != 0:
        raise ArgumentShapeError(
            f"{argument}: expected a single number, got an array of shape {tuple(array.shape)} "
            f"({array.size} elements)"
        )
    if array.dtype.kind == "c":
        raise TypeError(f"{argument}: complex numbers cannot be logged as scalars")
    try:
        return float(array)
    except (TypeError, ValueError):
        raise ArgumentValueTypeError(f"{argument}: cannot convert {value!r} to a number") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: {value!r} is too large to convert to a float") from None
