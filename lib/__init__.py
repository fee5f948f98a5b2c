"""hypertune: honest hyperparameter studies on a configurable PyTorch CNN, in five rooms.

- **The course library** (the modules of ``lib`` itself): ``paths`` (where things are kept), ``datasets``
  (Fashion-MNIST, MNIST, KMNIST, CIFAR-10, digits, an image folder: found and verified), ``data`` (splits,
  ``DataSpec``, in-memory batching, batch augmentation), ``config`` (strict configs), ``model`` (the CNN),
  ``dropout`` (``FastDropout``), ``train`` (``fit`` in fp32 or bf16, evaluation, BatchNorm recalibration),
  ``tracking`` (the fixed MLflow store: the only module that imports MLflow), ``store`` (the tag names and the
  one typed reader of runs), ``environ``, ``stats`` (intervals, paired effects, Holm), ``plots`` (figures with
  budgets).
- **The experiment engine** (``lib.engine``): trials, records, back-ends, grids, sweeps, nuisance tuning.
- **The report** (``lib.report``): ``python -m lib report``, its figures, checks and UI links, for any experiments.
- **The worked study** (``lib.study``): the H1-H3 verdicts, the final model, profiles, the notebook runner.
- **The front door** (``lib.cli``, ``python -m lib``) and, beside the engine, **the class server**
  (``lib.class_server``).

Importing ``lib`` sets two process defaults, each only where the environment does not set it already, and
before anything imports torch or MLflow (:func:`process_defaults`): the OpenMP wait policy and the project's
MLflow store. What this package is not: a general AutoML system. A lower room never imports a higher one.
"""

import os

from lib.paths import mlruns_dir

__version__ = "0.1.0"


def process_defaults() -> dict[str, str]:
    """The environment this package runs in, unless already set (``python -m lib``, notebooks, scripts):

    - ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads sleep while they wait instead of spinning. A training
      with several threads (``threads_per_trial``, a pool's workers on a machine with cores to spare) spun on
      cores other programs were using and took their time slices: beside busy processes a two-thread trial
      took 2.7 times as long without it (a trial alone now trains with one thread, see
      ``lib.engine.local_backend``). OpenMP reads it once, when torch loads, hence here.
    - ``MLFLOW_TRACKING_URI``: the project's store (``mlruns/mlflow.db``), so a plain ``mlflow`` call after
      ``import lib`` finds the same runs as the package, from any folder (docs/store.md).
    """
    return {"OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_TRACKING_URI": f"sqlite:///{mlruns_dir() / 'mlflow.db'}"}


for _name, _value in process_defaults().items():
    os.environ.setdefault(_name, _value)
