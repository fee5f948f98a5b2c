"""hypertune: honest hyperparameter studies on a configurable PyTorch CNN.

The package is split into small modules with one job each:

- ``lib.paths``     where the project keeps data, the MLflow store and figures
- ``lib.data``      the real Fashion-MNIST, verified, split and held in memory
- ``lib.config``    typed, strictly validated configs for model and training
- ``lib.model``     the CNN builder (Conv -> Norm -> Act -> Dropout -> Pool blocks + dense head)
- ``lib.dropout``   FastDropout: nn.Dropout's Bernoulli masks, drawn about 3x faster on the CPU
- ``lib.train``     the training loop, evaluation and BatchNorm recalibration
- ``lib.tracking``  the fixed MLflow store and helpers to log and query runs
- ``lib.trial``     one trial = one function call, with its cache key
- ``lib.engine``    controlled grids: cached, resumable, parallel, fail-safe
- ``lib.search``    hyperopt TPE sweeps on top of the same trial machinery
- ``lib.ray_backend`` the same grids and sweeps on Ray Tune (optional: requirements-ray.txt)
- ``lib.stats``     bootstrap confidence intervals and hypothesis verdicts
- ``lib.plots``     the study's figures
- ``lib.profiles``  smoke / quick / full budgets for notebooks and ``make run``
"""

__version__ = "0.1.0"
