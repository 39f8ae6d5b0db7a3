"""``fasttb.patch()``: make the stock writer classes create fasttb writers.

Frameworks build their writer themselves (``from torch.utils.tensorboard import SummaryWriter``
inside Lightning, transformers, accelerate), often with a reference to the class taken long
before the user's code runs. Replacing a module attribute would miss those references, so the
patch goes on the classes: ``__new__`` of ``torch.utils.tensorboard.SummaryWriter`` and of
``tensorboardX.SummaryWriter`` returns an instance of a class derived from both the fasttb
writer (first, so every method is fasttb's) and the stock class (so ``isinstance`` holds).

Subclasses of the stock classes are left alone: their overrides may rely on the stock writer's
internals. A method another tool put on a stock class, before the patch or after it (a test's
``mock.patch.object``, neptune's or SwanLab's wrappers, a monkeypatched ``add_hparams``), is
honoured by the writers made while it is there: they get a class that puts it before fasttb's.
A hook that a fasttb writer could not honour, on the stock ``__init__`` or on what the stock
writer builds on (its module's ``FileWriter`` and ``EventFileWriter``: wandb's
``sync_tensorboard``, ClearML), makes the patched class construct the stock writer instead, with
a warning, so that the tool still sees every record. A stock module imported after ``patch()``
is patched as it is imported, by a finder on ``sys.meta_path``; ``patch()`` itself imports
neither torch nor tensorboardX.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import os
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

# The stock modules, each with the class it defines and a factory for fasttb's class in its
# place (imported on first use, so that patch() stays cheap).
_TARGETS: Dict[str, Tuple[str, str]] = {
    "torch.utils.tensorboard.writer": ("SummaryWriter", "fasttb.writer"),
    "tensorboardX.writer": ("SummaryWriter", "fasttb.tensorboardX"),
}
# What each stock writer builds on, by the name its module uses, and the module that defines it.
_INTERNALS: Dict[str, Dict[str, str]] = {
    "torch.utils.tensorboard.writer": {"FileWriter": "torch.utils.tensorboard.writer",
                                       "EventFileWriter": "tensorboard.summary.writer.event_file_writer"},
    "tensorboardX.writer": {"FileWriter": "tensorboardX.writer",
                            "EventFileWriter": "tensorboardX.event_file_writer"},
}
_STDLIB = os.path.dirname(inspect.__file__)
_warned: set = set()  # the hooks already warned about, by (where, id)

_lock = threading.RLock()
# Stock class -> the class its __new__ makes while patched. The __new__ installed on the stock
# class stays after unpatch() and then allocates as the stock class always did: CPython cannot
# give a class back its inherited __new__ once one was set (deleting it leaves a slot that
# passes the constructor's arguments on to object.__new__, which refuses them).
_patched: Dict[type, type] = {}
_finder: Optional["_Finder"] = None  # set while patched

ENV_VAR = "FASTTB_PATCH"
_OFF = ("", "0", "false", "no", "off")  # (fasttb-patch.pth has its own copy)
_environment_before: Optional[str] = None  # FASTTB_PATCH before patch() set it


def patch() -> None:
    """Make ``torch.utils.tensorboard.SummaryWriter`` and ``tensorboardX.SummaryWriter`` create
    fasttb writers, whether they are imported already or later.

    A writer made this way is an instance of the stock class as well as of fasttb's, so
    ``isinstance`` checks in frameworks keep passing; the tensorboardX class gets fasttb's
    tensorboardX dialect (``fasttb.tensorboardX.SummaryWriter``). It also sets ``FASTTB_PATCH=1``
    in the environment, so that the interpreters the program starts from then on are patched as
    well (``mp.spawn``, forkserver and spawn workers, Lightning's ``ddp_spawn``, subprocesses).
    Calling it again does nothing; ``unpatch()`` undoes it.
    """
    global _finder, _environment_before
    with _lock:
        if _finder is None:
            _finder = _Finder()
            sys.meta_path.insert(0, _finder)
            _environment_before = os.environ.get(ENV_VAR)
            os.environ[ENV_VAR] = "1"
        for name in _TARGETS:
            module = sys.modules.get(name)
            if module is not None and getattr(module, "__spec__", None) is not None:
                _patch_module(module)


def unpatch() -> None:
    """Undo ``patch()``: the stock classes create stock writers again, and ``FASTTB_PATCH`` is as
    it was before. Writers already created stay fasttb writers."""
    global _finder
    with _lock:
        if _finder is not None:
            try:
                sys.meta_path.remove(_finder)
            except ValueError:
                pass
            _finder = None
            if _environment_before is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = _environment_before


def patch_from_environment() -> None:
    """Patch when the ``FASTTB_PATCH`` environment variable is set, to anything but empty, ``0``,
    ``false``, ``no`` or ``off`` (in any case).

    Run at interpreter start by the ``fasttb-patch.pth`` file the wheel installs, so that jobs
    started by launchers (``FASTTB_PATCH=1 torchrun train.py``) log through fasttb unchanged.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() not in _OFF:
        patch()


def _patch_module(module: ModuleType) -> None:
    class_name, fasttb_module = _TARGETS[module.__name__]
    stock = getattr(module, class_name, None)
    if not isinstance(stock, type) or stock in _patched or stock.__dict__.get("__new__") is not None:
        return  # already patched, or a class that allocates itself: left alone
    import importlib

    fast = getattr(importlib.import_module(fasttb_module), "SummaryWriter")
    # fasttb's writers derive from a native type that must allocate them (object.__new__ refuses).
    allocate = fast.__new__

    def _allocate(cls: type, *args: Any, **kwargs: Any) -> Any:
        return allocate(cls)

    _allocate.__signature__ = _signature(fast.__init__)  # type: ignore[attr-defined]
    combined = type("SummaryWriter", (fast, stock), {
        "__module__": fast.__module__,
        "__qualname__": "SummaryWriter",
        "__doc__": f"A fasttb writer standing in for {stock.__module__}.{stock.__qualname__} "
                   f"(see fasttb.patch()).\n\n{fast.__doc__ or ''}",
        # Otherwise the new class would inherit the stock class's patched __new__ below.
        "__new__": _allocate,
    })
    stock_file = _file_of(module.__name__)
    at_patch = dict(vars(stock))
    overridden = {name for name in at_patch if not name.startswith("__") and
                  any(name in vars(c) for c in combined.__mro__[1:combined.__mro__.index(stock)])}
    made: Dict[Tuple[Tuple[str, int], ...], type] = {}  # the last class with assignments, by them

    def writer_class() -> type:
        # What other code put on the stock class, among the names fasttb's class defines (the
        # others reach the stock class's anyway): anything but the stock module's own definition.
        assigned = {name: value for name, value in vars(stock).items()
                    if name in overridden and not _is_stock_definition(value, stock_file, at_patch.get(name))}
        if not assigned:
            return combined
        key = tuple(sorted((name, id(value)) for name, value in assigned.items()))
        if key not in made:
            made.clear()
            made[key] = type("SummaryWriter", (combined,), {
                **assigned, "__module__": fast.__module__, "__qualname__": "SummaryWriter"})
        return made[key]

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls is stock and _finder is not None:
            hook = _unhonourable_hook(module, stock, stock_file)
            if hook is None:
                return allocate(writer_class())
            _warn_once(hook, stock)
        return object.__new__(cls)

    # inspect.signature(stock) reads a __new__ of the class before its __init__.
    __new__.__signature__ = _signature(stock.__init__)  # type: ignore[attr-defined,misc]
    stock.__new__ = __new__  # type: ignore[assignment]
    _patched[stock] = combined


def _file_of(module_name: str) -> str:
    module = sys.modules.get(module_name)
    return getattr(module, "__file__", None) or ""


def _is_stock_definition(value: Any, filename: str, at_patch: Any = None) -> bool:
    """Whether a class attribute is the stock module's own: a function written in `filename`,
    bare or under a standard-library decorator (tensorboardX's ``contextmanager``), or else the
    very object the class held at the patch. A wrapper another tool made (even with
    ``functools.wraps``), a mock or any other object is not."""
    function: Any = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
    code = getattr(function, "__code__", None)
    if code is None:
        return value is at_patch and not callable(value)  # data the stock class defines
    if code.co_filename == filename:
        return True
    inner = inspect.unwrap(function)
    inner_code = getattr(inner, "__code__", None)
    return (inner is not function and inner_code is not None and inner_code.co_filename == filename
            and os.path.dirname(code.co_filename) == _STDLIB)


def _unhonourable_hook(module: ModuleType, stock: type, stock_file: str) -> Optional[Tuple[str, Any]]:
    """A hook that a fasttb writer would never call, as ``(where, hook)``; None if there is none.
    A wrapped stock ``__init__`` would run the stock constructor; wandb's ``sync_tensorboard``
    replaces the module's ``EventFileWriter`` to learn each log dir, ClearML wraps
    ``FileWriter.add_event`` to see each record; fasttb's writer uses neither."""
    init = vars(stock).get("__init__")
    if init is not None and not _is_stock_definition(init, stock_file):
        return f"{module.__name__}.{stock.__name__}.__init__", init
    for name, home in _INTERNALS[module.__name__].items():
        cls = getattr(module, name, None)
        if not isinstance(cls, type):
            continue
        if cls.__module__ != home:
            return f"{module.__name__}.{name}", cls
        home_file = _file_of(home)
        for attribute, value in vars(cls).items():
            if callable(value) or isinstance(value, (property, staticmethod, classmethod)):
                if not _is_stock_definition(value, home_file):
                    return f"{module.__name__}.{name}.{attribute}", value
    return None


def _warn_once(hook: Tuple[str, Any], stock: type) -> None:
    where, value = hook
    key = (where, id(value))
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    code = getattr(getattr(value, "__func__", value), "__code__", None)  # (wraps copies __module__)
    by = code.co_filename if code is not None else getattr(value, "__module__", None) or type(value).__module__
    warnings.warn(f"fasttb.patch(): {where} was replaced (by {by}); a fasttb writer would never call the "
                  f"replacement, so this {stock.__qualname__} is the stock writer: slower, but seen by "
                  f"whatever hooked it", RuntimeWarning, stacklevel=3)


def _signature(function: Any) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a stock writer module right after it is executed, when it is first imported."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            if _finder is not None:
                _patch_module(module)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._loader, name)
