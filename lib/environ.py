"""Environment variables set for the length of a block, then put back as they were.

Back-ends and the notebook runner hand settings to processes they start (worker processes, Ray,
kernels) through the environment; :func:`environment` keeps that from leaking into the rest of the
caller's process. What this is not: configuration. Settings live in ``lib.config`` and the profiles.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` inside the block; afterwards each name has its old value (or none)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
