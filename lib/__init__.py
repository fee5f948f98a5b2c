"""hypertune: honest hyperparameter studies on a configurable PyTorch CNN.

The package is split into small modules with one job each:

- ``lib.paths``     where the project keeps data, the MLflow store and figures; parses store URIs
- ``lib.datasets``  the data sets (Fashion-MNIST, MNIST, KMNIST, CIFAR-10, digits, an image folder): found, verified
- ``lib.data``      splits (stratified validation, held-out test), in-memory batching
- ``lib.config``    typed, strictly validated configs for model and training
- ``lib.model``     the CNN builder (Conv -> Norm -> Act -> Dropout -> Pool blocks + dense head)
- ``lib.dropout``   FastDropout: nn.Dropout's Bernoulli masks, drawn about 3x faster on the CPU
- ``lib.train``     the training loop, evaluation, BatchNorm recalibration, the divergence rule
- ``lib.engine.trial``     one trial = one function call, with its cache key
- ``lib.tracking``  the fixed MLflow store (the only module that imports MLflow), typed run records
- ``lib.engine.records``   a study's records: cache hits vs trials to train, open/close/abort runs, progress, results
- ``lib.engine.backend``   the interface between the records and a back-end (a feed of trials, run options)
- ``lib.engine.local_backend`` back-end: trials in this process or a pool of worker processes
- ``lib.engine.ray_backend`` the door to Ray: install check and a cluster for a call (optional: requirements-ray.txt)
- ``lib.engine.ray_tune``  back-end: trials on Ray Tune, imported only for ``engine="ray"``
- ``lib.engine``    controlled grids (cached, resumable, parallel, fail-safe): validates and dispatches
- ``lib.engine.search``    hyperopt sweeps (TPE or random): the search space and the one sweep driver of both back-ends
- ``lib.stats``     confidence intervals, paired effects, Holm decisions, the combined test interval
- ``lib.study.analysis``  the hypotheses' tests on the runs: verdict rows with budget, seeds and adjusted decision
- ``lib.plots``     the study's figures, each with its budget
- ``lib.report``    ``python -m lib report``: figures, top_runs.csv and report.md for any experiments; UI links
- ``lib.study.profiles``  smoke / quick / full / deep budgets for notebooks and ``make run``
- ``lib.cli``       ``python -m lib``: data, grid, sweep, report, links, study (one-line errors)
- ``lib.class_server`` a tracking server for a class: PostgreSQL, logins, students from a roster
"""

__version__ = "0.1.0"
