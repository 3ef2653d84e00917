"""Histogram gradient boosting whose bin edges are quantiles of the unweighted covariates.

scikit-learn (from 1.6) computes the bin edges of a weighted fit as weighted quantiles, one
``_weighted_percentile`` call per edge and feature: 254 x p Python-level calls per fit. On
700 rows and 10 covariates a weighted fit took 0.69 s against 0.18 s unweighted (one thread,
scikit-learn 1.9.1). The weighted fits here are the R-learner's contrast model (weights
``(T - e(X))^2``: two values in a trial) and design-weighted nuisance fits; one calibrated
analysis of 1,000 units makes about twenty of them.

The bin edges only decide where a split may fall. These classes compute them from the unweighted
covariate values (scikit-learn's behaviour before 1.6), and use the weights everywhere they
matter for the fit: gradients, hessians, leaf values, the early-stopping loss. With 255 bins a
weighted and an unweighted quantile grid differ by at most a few bins, and every distinct
value still gets its own bin when there are at most 255 of them.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

__all__ = ["QuantileBinnedHGBClassifier", "QuantileBinnedHGBRegressor"]


def _bins_without_weights(cls: type) -> bool:
    """Whether ``cls._bin_data`` takes the weights this module drops (scikit-learn >= 1.6)."""
    return "sample_weight" in inspect.signature(cls._bin_data).parameters


_OVERRIDE = _bins_without_weights(HistGradientBoostingRegressor)


class _UnweightedBinning:
    """Mixin: the training data's bin edges ignore ``sample_weight`` (module docstring)."""

    if _OVERRIDE:

        def _bin_data(
            self, X: np.ndarray, sample_weight: Any, is_training_data: bool
        ) -> np.ndarray:
            return super()._bin_data(X, None, is_training_data)  # type: ignore[misc]


class QuantileBinnedHGBRegressor(_UnweightedBinning, HistGradientBoostingRegressor):
    """:class:`~sklearn.ensemble.HistGradientBoostingRegressor`, bin edges from unweighted data.

    Same parameters, fit and predict; only the training data's binning ignores
    ``sample_weight`` (see the module docstring).
    """


class QuantileBinnedHGBClassifier(_UnweightedBinning, HistGradientBoostingClassifier):
    """:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, bin edges from unweighted data.

    Same parameters, fit and predict; only the training data's binning ignores
    ``sample_weight`` (see the module docstring).
    """
