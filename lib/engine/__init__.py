"""The experiment engine: run many trials of any configuration, cached, resumable, parallel and fail-safe.

Rooms: ``trial`` (one config in, one result out, and its cache key), ``records`` (what is cached, open and
closed runs, progress), ``backend`` (the interface a back-end implements), ``local_backend`` and ``ray_tune``
(peers behind it; ``ray_backend`` is the door to Ray), ``grid`` (controlled grids: validate and dispatch),
``search`` (hyperopt sweeps: the search space and the one sweep driver) and ``halving`` (nuisance ranges tuned
per arm by successive halving, with range extension).

What this is not: a study. It knows nothing of H1-H3, of verdicts or of notebooks (``lib.study``); it uses
the course library below it (config, data, model, train, tracking) and never imports upward.
"""
