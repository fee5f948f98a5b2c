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

What this package is not: a general AutoML system. A lower room never imports a higher one.
"""

__version__ = "0.1.0"
