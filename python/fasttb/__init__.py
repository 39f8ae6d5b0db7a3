"""fasttb: TensorBoard logging at native speed, a drop-in for torch's ``SummaryWriter``.

Change one import line::

    from fasttb import SummaryWriter   # was: from torch.utils.tensorboard import SummaryWriter

or change none: ``fasttb.patch()`` makes the stock classes create fasttb writers (frameworks
included), as do ``python -m fasttb run script.py`` and ``FASTTB_PATCH=1`` in the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _core
from ._patch import patch, unpatch
from .writer import FileWriter, SummaryWriter


def set_queue_limit(nbytes: int) -> None:
    """Bound the process-wide record queue to ``nbytes`` bytes (default 256 MiB, or the
    ``FASTTB_QUEUE_BYTES`` environment variable). Copied histogram values and image pixels count
    against it."""
    _core.set_queue_limit(int(nbytes))


__version__: str  # set by __getattr__ on first use
if TYPE_CHECKING:
    from .reader import SummaryReader


def __getattr__(name: str) -> Any:
    # __version__ is looked up on first use: importlib.metadata alone costs tens of milliseconds.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        global __version__
        try:
            __version__ = version("fasttb")
        except PackageNotFoundError:  # running from a source tree
            __version__ = "0.0.0"
        return __version__
    if name == "SummaryReader":  # the reader loads on first use (it is not needed for writing)
        from .reader import SummaryReader

        return SummaryReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FileWriter", "SummaryReader", "SummaryWriter", "patch", "set_queue_limit", "unpatch", "__version__"]
