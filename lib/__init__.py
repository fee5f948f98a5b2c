"""hypertune: honest hyperparameter studies on a configurable PyTorch CNN.

The package is split into small modules with one job each:

- ``lib.paths``     where the project keeps data, the MLflow store and figures
- ``lib.data``      the real Fashion-MNIST, verified, split and held in memory
- ``lib.config``    typed, strictly validated configs for model and training
- ``lib.model``     the CNN builder (Conv -> Norm -> Act -> Dropout -> Pool blocks + dense head)
- ``lib.dropout``   FastDropout: nn.Dropout's Bernoulli masks, drawn about 3x faster on the CPU
- ``lib.train``     the training loop, evaluation and BatchNorm recalibration
- ``lib.tracking``  the fixed MLflow store (the only module that imports MLflow), typed run records
- ``lib.trial``     one trial = one function call, with its cache key
- ``lib.records``   a study's records: cache hits vs trials to train, open/close/abort runs, progress, results
- ``lib.backend``   the interface between the records and a back-end (a feed of trials, run options)
- ``lib.local_backend`` back-end: trials in this process or a pool of worker processes
- ``lib.ray_backend`` the door to Ray: install check and a cluster for a call (optional: requirements-ray.txt)
- ``lib.ray_tune``  back-end: trials on Ray Tune, imported only for ``engine="ray"``
- ``lib.engine``    controlled grids (cached, resumable, parallel, fail-safe): validates and dispatches
- ``lib.search``    hyperopt TPE sweeps: the search space and the one sweep driver of both back-ends
- ``lib.stats``     bootstrap confidence intervals and hypothesis verdicts
- ``lib.plots``     the study's figures
- ``lib.profiles``  smoke / quick / full budgets for notebooks and ``make run``
"""

__version__ = "0.1.0"
