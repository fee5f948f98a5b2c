"""The experiment engine: run many trials of any configuration, cached, resumable, parallel and fail-safe.

Rooms: ``trial`` (one config in, one result out, and its cache key), ``records`` (what is cached, open and
closed runs, progress), ``backend`` (the interface a back-end implements), ``local_backend`` and ``ray_tune``
(peers behind it; ``ray_backend`` is the door to Ray), ``request`` (what every study driver is asked: the
experiment, base config, data, tags and engine), ``grid`` (controlled grids: validate and dispatch),
``tuning`` (nuisance tuned per arm, winners re-measured), ``halving`` (a rung policy on top of tuning: nuisance
ranges by successive halving, with range extension; ``ranges`` parses and draws them; ``replication`` tunes
chosen arms again on fresh tuning seeds and says how often the same decision results), ``search`` (hyperopt
sweeps: the search space and the one sweep driver) and ``algorithms`` (the search algorithms, one file each).

What this is not: a study. It knows nothing of H1-H3, of verdicts or of notebooks (``lib.study``); it uses
the course library below it (config, data, model, train, tracking) and never imports upward.
"""
