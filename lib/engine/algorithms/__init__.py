"""The search algorithms of a sweep, one file each, found by themselves: add a file here and nothing else.

Every module of this package (except ``base`` and names starting with ``_``) is imported once, on first
use, and each concrete :class:`~lib.engine.algorithms.base.SearchAlgorithm` subclass defined in it is
registered under its ``name``. ``run_sweep(algo=...)`` (``lib.engine.search``), the ``--algo`` choices and
help of ``python -m lib sweep`` and the docs all read :func:`registry`; no list of names is written down
anywhere else.

What this is not: the sweep loop (``lib.engine.search``); an algorithm only proposes points.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from lib.engine.algorithms.base import SearchAlgorithm, SearchSetup
from lib.engine.backend import StudyError

__all__ = ["DEFAULT", "SearchAlgorithm", "SearchSetup", "get", "help_lines", "names", "registry"]

DEFAULT = "tpe"
_FOUND: dict[str, type[SearchAlgorithm]] = {}


def _discover() -> dict[str, type[SearchAlgorithm]]:
    """Import every module of this package and collect the algorithms they define, by name."""
    found: dict[str, type[SearchAlgorithm]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            own = inspect.isclass(value) and value.__module__ == module.__name__
            if not own or not issubclass(value, SearchAlgorithm) or inspect.isabstract(value):
                continue
            name = getattr(value, "name", "")
            if not name or not getattr(value, "help", ""):
                raise TypeError(f"{module.__name__}.{value.__name__}: a search algorithm needs a name and a help line")
            if name in found:
                twice = f"{found[name].__module__} and {module.__name__}"
                raise TypeError(f"search algorithm {name!r} is defined twice, in {twice}")
            found[name] = value
    return found


def registry() -> dict[str, type[SearchAlgorithm]]:
    """Every search algorithm by name: the default (:data:`DEFAULT`) first, then the others by name."""
    if not _FOUND:
        found = _discover()
        _FOUND.update(sorted(found.items(), key=lambda item: (item[0] != DEFAULT, item[0])))
    return dict(_FOUND)


def names() -> list[str]:
    """The names ``--algo`` and ``run_sweep(algo=...)`` accept, the default first."""
    return list(registry())


def get(name: str) -> type[SearchAlgorithm]:
    """The algorithm called ``name``, or a one-line :class:`StudyError` listing the known ones."""
    found = registry()
    if not isinstance(name, str) or name not in found:
        raise StudyError(f"algo={name!r}: must be one of {list(found)}")
    return found[name]


def help_lines() -> list[str]:
    """``name: help`` for every algorithm, as ``--help`` and the docs print them."""
    return [f"{name}: {cls.help}" for name, cls in registry().items()]
