"""The door to the Ray back-end: is Ray installed, and a Ray cluster for the duration of a call.

``engine="ray"`` in :func:`lib.engine.grid.run_trials`, :func:`lib.engine.grid.run_grid` and
:func:`lib.engine.search.run_sweep` checks here first (:func:`import_ray`: a :class:`RayNotInstalledError`
with the install hint, before anything is logged), then runs on ``lib.engine.ray_tune``, the back-end
itself, which imports Ray at the top and is imported only then.

- **Where** (:func:`ray_cluster`): a local Ray started for the call (``num_cpus`` = cores, no
  dashboard) and shut down afterwards, or the cluster named by ``RAY_ADDRESS`` (a driver connection
  only; the cluster stays up).

What this is not: the Tune run (``lib.engine.ray_tune``) or the records (``lib.engine.records``).
``lib`` works without Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

from lib.engine.backend import StudyError

INSTALL_HINT = "pip install -r requirements-ray.txt  (or: pip install -e .[ray])"


class RayNotInstalledError(StudyError, ImportError):
    """``engine="ray"`` was asked for, but Ray Tune cannot be imported."""


def import_ray() -> Any:
    """The ``ray`` module with Tune, or a :class:`RayNotInstalledError`."""
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(
            f"engine='ray' needs Ray Tune, which is not installed ({exc}). Install it with: {INSTALL_HINT}; "
            f"or use engine='local'."
        ) from None
    return ray


@dataclasses.dataclass
class Cluster:
    """What :func:`ray_cluster` connected to."""

    address: str
    started_here: bool
    startup_seconds: float
    cpus: float
    gpus: float


@contextlib.contextmanager
def ray_cluster(num_cpus: int | None = None) -> Iterator[Cluster]:
    """Ray for the duration of a ``with`` block.

    With ``RAY_ADDRESS`` set, connect to that cluster (Ray reads the variable itself; an explicit
    address needs ``RAY_AUTH_MODE=token`` when the cluster uses token auth). Otherwise start a local
    Ray with ``num_cpus`` (default: all cores) and no dashboard. Ray is shut down afterwards when
    this call initialised it; an already initialised Ray is used as it is and left running.
    """
    import logging

    ray = import_ray()
    started = time.perf_counter()
    initialised_here = not ray.is_initialized()
    if initialised_here:
        common = {"log_to_driver": False, "logging_level": logging.WARNING}
        if os.environ.get("RAY_ADDRESS"):
            context = ray.init(**common)
        else:
            context = ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
        address = context.address_info.get("gcs_address", "")
    else:
        address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    cluster = Cluster(
        address=address,
        started_here=initialised_here and not os.environ.get("RAY_ADDRESS"),
        startup_seconds=time.perf_counter() - started,
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
    )
    try:
        yield cluster
    finally:
        if initialised_here:
            ray.shutdown()
