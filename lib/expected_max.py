"""Expected-max curves: would more trials have changed the answer?

A search of N trials reports its best validation accuracy; that number depends on N. Dodge et al. 2019
("Show Your Work: Improved Reporting of Experimental Results", EMNLP) plot the *expected* best validation
accuracy against the number of trials n, computed from the N trials already run: a curve that is still
climbing at n = N says more trials would probably have found a better configuration; a flat one says the
search had converged for this space and budget. Two estimators of E[max of n], from the sorted values
v_(1) <= ... <= v_(N):

* ``unbiased=True`` (default; Tang et al. 2020, "Showing Your Work Doesn't Always Work", ACL): the n trials
  are drawn *without* replacement from the N observed ones,
  E[max of n] = sum_i v_(i) * C(i-1, n-1) / C(N, n), for 1 <= n <= N. It is the exact mean of the best of
  every subset of n of the N trials, so an unbiased estimate of the best of n fresh trials; it ends at
  n = N on the best trial observed and cannot go beyond it.
* ``unbiased=False`` (Dodge et al.): n draws *with* replacement from the empirical distribution,
  E[max of n] = sum_i v_(i) * [(i/N)^n - ((i-1)/N)^n], defined for any n. Tang et al. show it is biased
  low for n > 1 (a draw can repeat a trial), and past n = N it only creeps towards the observed best.

Both are computed in the equivalent form v_(1) + sum_{i>=2} (v_(i) - v_(i-1)) * P(max of n >= v_(i)),
which is exact for ties (a tie contributes a zero step) and never decreases in n.

:func:`expected_max_band` adds a percentile-bootstrap band (the N trials resampled with replacement, the
curve recomputed on each resample): how much the curve depends on which trials happened to be drawn.
:func:`curves` does both for every group of a trial frame (``lib.report.trial_runs``);
``lib.plots.expected_max_figure`` draws the result.

What this is not:

* Not a forecast beyond the trials run: nothing here sees above the best observed trial. The unbiased curve
  stops at n = N; the band's upper edge near n = N is the observed best.
* Not a statement about an adaptive search with n trials: the estimators treat the N trials as
  exchangeable draws from one distribution (random search). For TPE the curve says what a random subset of
  these trials would have given, not what TPE run for n trials would give (its later trials depend on the
  earlier ones). A grid's trials are not random draws of anything but the grid itself.
* Not a comparison at equal cost: trials of different budgets (epochs, training images) count as one draw
  each; compare curves of the same budget.

Failed trials (``NaN``; ``status != "finished"`` in :func:`curves`) are dropped, not counted as draws of
value -inf. A failed trial is a draw that produced nothing; as -inf, E[max of n] would be -inf for every n
up to the number of failures (some subset is all failures), which says nothing useful. Dropped, the curve
is the expected best of n *finished* trials, and n counts finished trials: with a share f of trials
failing, n finished trials cost about n / (1 - f) attempts. :func:`curves` reports the failures per group
(column ``failed``) so a caption can say so. Collapsed trials (finished at chance accuracy, the
``collapsed`` column of ``lib.report.trial_runs``) are kept: unlike a failure they returned an accuracy,
and a search has to spend them like any other draw (dropping them would flatter the curve at small n).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.store.schema import FINISHED

COLUMNS = ["group", "n", "expected_max", "low", "high", "trials", "failed"]


def _finite_sorted(values: object) -> np.ndarray:
    """The values as a sorted 1-d float array, NaN (failed trials) dropped."""
    array = np.asarray(values, dtype=float).ravel()
    if np.isinf(array).any():
        raise ValueError("expected_max: values must be finite or NaN (a failed trial), not +-inf")
    return np.sort(array[~np.isnan(array)])


def _check_n_max(n_max: int | None, size: int, unbiased: bool) -> int:
    n_max = size if n_max is None else int(n_max)
    if n_max < 0:
        raise ValueError(f"expected_max: n_max must be >= 0, got {n_max}")
    if unbiased and n_max > size:
        raise ValueError(
            f"expected_max: the unbiased (without-replacement) estimator needs n <= N, got n_max={n_max} with "
            f"N={size} finished trials; ask for n_max <= {size} or use unbiased=False (Dodge et al., biased)"
        )
    return n_max


def _below(size: int, n_max: int, unbiased: bool) -> np.ndarray:
    """``P[n-1, i] = P(max of n <= v_(i))`` for n = 1..n_max, i = 0..size (i = 0: below every value).

    Without replacement: C(i, n) / C(N, n), built as a running product over n of (i - n + 1) / (N - n + 1),
    which stays in [0, 1] (no factorials, no overflow) and never grows with n. With replacement: (i / N)^n.
    """
    i = np.arange(size + 1, dtype=float)
    n = np.arange(1, n_max + 1, dtype=float)[:, None]
    if unbiased:
        ratios = np.clip(i[None, :] - n + 1, 0, None) / (size - n + 1)
        return np.cumprod(ratios, axis=0)
    return (i[None, :] / size) ** n


def _curves_of_sorted(ordered: np.ndarray, n_max: int, unbiased: bool) -> np.ndarray:
    """E[max of n] for each row of ``ordered`` (shape (..., N), sorted along the last axis): (..., n_max)."""
    size = ordered.shape[-1]
    reach = 1.0 - _below(size, n_max, unbiased)[:, 1:size]  # P(max of n >= v_(i)) for i = 2..N (as 1-based)
    steps = np.diff(ordered, axis=-1)  # v_(i) - v_(i-1) >= 0: zero across a tie
    return ordered[..., :1] + steps @ reach.T


def expected_max(values: object, n_max: int | None = None, unbiased: bool = True) -> np.ndarray:
    """E[best of n trials] for n = 1..``n_max`` (index n-1), from the observed trial ``values``.

    ``values``: one score per trial (e.g. validation accuracy); NaN marks a failed trial and is dropped,
    so N and n count finished trials (see the module docstring). ``n_max``: default N, the number of
    finished trials; with ``unbiased=True`` (Tang et al., without replacement) it must not exceed N, with
    ``unbiased=False`` (Dodge et al., with replacement) any n is allowed. Ties are exact. With N = 1 the
    curve is that one value for every n. With no finished trial the curve is all NaN (empty for
    ``n_max=None``). The unbiased curve starts at the mean (n = 1) and ends at the best value (n = N).
    """
    ordered = _finite_sorted(values)
    if not len(ordered):
        return np.full(0 if n_max is None else int(n_max), np.nan)
    n_max = _check_n_max(n_max, len(ordered), unbiased)
    return _curves_of_sorted(ordered, n_max, unbiased)


def expected_max_band(
    values: object,
    n_max: int | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    unbiased: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A percentile-bootstrap band around :func:`expected_max`: ``(low, high)``, each of length ``n_max``.

    The N finished trials (NaN dropped) are resampled with replacement ``n_resamples`` times and the curve
    is recomputed on each resample (vectorized: one matrix product for all of them); ``low``/``high`` are
    the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles per n. Deterministic for a ``seed``.

    Read it as how much the curve depends on which trials the search happened to draw, not as an
    interval for the best of n fresh trials beyond the observed ones: a resample never holds a value
    above the observed best, so near n = N the band's upper edge is that best. It is a plain percentile
    band, not widened: the percentile band of a skewed statistic need not contain the estimate (in the
    tests, on skewed accuracies of 2 to 60 trials, it always did). With N = 1 the band is the single value.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"expected_max_band: confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"expected_max_band: n_resamples must be >= 1, got {n_resamples}")
    ordered = _finite_sorted(values)
    if not len(ordered):
        empty = np.full(0 if n_max is None else int(n_max), np.nan)
        return empty, empty.copy()
    n_max = _check_n_max(n_max, len(ordered), unbiased)
    array = np.asarray(values, dtype=float).ravel()
    finished = array[~np.isnan(array)]  # the trials in their given order: resample i picks finished[picks[i]]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(finished), size=(int(n_resamples), len(finished)))
    resampled = np.sort(finished[picks], axis=1)
    boot = _curves_of_sorted(resampled, n_max, unbiased)  # (n_resamples, n_max)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return low, high


def curves(
    frame: pd.DataFrame,
    by: str | None,
    value: str = "val_accuracy",
    n_max: int | None = None,
    unbiased: bool = True,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Expected-max curve and bootstrap band of ``value`` for each group of ``frame`` by column ``by``.

    ``frame``: one row per trial, e.g. from ``lib.report.trial_runs`` (filter it to the trials that are
    draws of one search first: ``source == "sweep"``, one budget). ``by``: the arm, e.g. the sweep's tag
    column ``lib.store.schema.SWEEP`` (one curve per search), ``"norm_type"`` or a scientific hyperparameter;
    ``None``: one group, ``"all"``. Rows whose ``by`` is missing are left out. A trial counts when ``status``
    (if the frame has it) is ``finished`` and ``value`` is not NaN; the others are counted in ``failed``.
    Collapsed trials (a boolean ``collapsed`` column) are kept: they are real draws of the search (module
    docstring).

    Returns columns ``group, n, expected_max, low, high, trials, failed``: one row per group and
    n = 1..min(n_max, N) for the unbiased estimator (N = the group's finished trials; ``n_max`` default N),
    n = 1..n_max (default N) for Dodge's. ``trials`` is N, ``failed`` the group's failed trials.
    A group without a finished trial gets no rows. Groups are in sorted order.
    """
    if value not in frame:
        raise KeyError(f"curves: the frame has no column {value!r}")
    if by is not None and by not in frame:
        raise KeyError(f"curves: the frame has no column {by!r} to group by")
    data = frame.assign(_group="all") if by is None else frame.dropna(subset=[by]).assign(_group=frame[by])
    scores = pd.to_numeric(data[value], errors="coerce").astype(float)
    if "status" in data:
        scores = scores.where(data["status"].astype(str).str.lower().eq(FINISHED))
    data = data.assign(_score=scores)
    parts = []
    for group, part in data.groupby("_group", sort=True):
        values = part["_score"].to_numpy()
        size = int(np.count_nonzero(~np.isnan(values)))
        if size == 0:
            continue
        top = size if n_max is None else (min(int(n_max), size) if unbiased else int(n_max))
        curve = expected_max(values, top, unbiased=unbiased)
        low, high = expected_max_band(values, top, n_resamples, confidence, seed, unbiased=unbiased)
        parts.append(
            pd.DataFrame(
                {
                    "group": group,
                    "n": np.arange(1, top + 1),
                    "expected_max": curve,
                    "low": low,
                    "high": high,
                    "trials": size,
                    "failed": len(values) - size,
                }
            )
        )
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object if name == "group" else float) for name in COLUMNS})
    return pd.concat(parts, ignore_index=True)[COLUMNS]
