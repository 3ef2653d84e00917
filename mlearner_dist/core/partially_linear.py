"""A partially linear outcome model: linear in the mediator, any learner in the covariates.

The outcome model given the mediator, mu_Y(1, m, x) = E[Y | T=1, M=m, X=x], is fitted on the
treated but evaluated at the controls' mediator values (the nested regression eta and the direct
contrast). Where the treatment moves the mediator far, those values lie outside the treated
units' mediator range given X, and the model extrapolates: a tree ensemble holds its value at the
edge; a ridge regression on (M, X) extrapolates linearly but with a slope biased by whatever of
the covariates' effect it cannot represent and that is correlated with M (in simple-part the
direct effect S(X1 + X2) T shares its covariates with the treated units' mediator shift, and the
pooled slope absorbed part of it: leaf indirect effect 2.12 and direct 0.89 against 1.60 and
1.60, one replicate at n = 5,000, noise sd 1).

:class:`PartiallyLinearRegressor` fits

    E[Y | M, X] = M' theta + g(X)

by Robinson's (1988) residual-on-residual regression, as in DoubleML's partially linear model:
with l(X) = E[Y | X] and m_j(X) = E[M_j | X] estimated out of fold on the training rows
(``n_folds`` inner folds of a seeded permutation),

    theta = argmin_b  sum_i w_i (r_i - s_i' b)^2,   r_i = y_i - l^(x_i),  s_i = m_i - m^(x_i),

which is consistent whatever the form of g, because the covariates' effect is removed before the
slope is fitted. Then g(x) = E[Y - M' theta | X = x] = l(x) - m(x)' theta, from the same inner
models (averaged over the folds: 2 (1 + len(M)) fits on half the rows each, no refit). Predictions
are M' theta + g(X): linear in the mediator, so evaluating at another arm's mediator values
extrapolates along the fitted slope. The model is right when the mediator's effect on the outcome
is linear with a slope that does not depend on X; when the slope varies (mediator-slope) it is
wrong, and the ``auto`` learner's cross-validated loss says so (it is one candidate among
others, never forced).

Every part (l and each m_j) is a clone of one unfitted component estimator built on the
covariates only (a pipeline whose encoder drops the mediator columns), so any learner of the
package can serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone

from mlearner_dist.exceptions import ConfigError

__all__ = ["PartiallyLinearRegressor"]


class PartiallyLinearRegressor(RegressorMixin, BaseEstimator):
    """E[y | M, X] = M' theta + g(X), theta by cross-fitted residual-on-residual regression.

    Parameters
    ----------
    linear_columns : sequence of str
        The columns entering linearly (the mediators); at least one.
    component : estimator
        Unfitted regressor taking the same DataFrame and ignoring ``linear_columns`` (a pipeline
        of :func:`~mlearner_dist.core.learners.make_learner` on the other columns); cloned for
        l and every m_j in every inner fold. Its sample weights are passed as
        ``model__sample_weight`` when it is a pipeline, else as ``sample_weight``.
    n_folds : int, default 2
        Inner folds of the residuals (>= 2).
    random_state : int, default 0
        Seed of the inner folds' permutation.

    Attributes
    ----------
    theta_ : ndarray of shape (len(linear_columns),)
        The slopes.
    theta_se_ : ndarray of shape (len(linear_columns),)
        Their heteroskedasticity-robust (HC0) standard errors from the residual regression.
    l_, m_ : list
        Per inner fold, the fitted l and the fitted m_j (one list per fold).
    """

    def __init__(
        self,
        linear_columns: Sequence[str] = (),
        component: Any = None,
        n_folds: int = 2,
        random_state: int = 0,
    ) -> None:
        self.linear_columns = linear_columns
        self.component = component
        self.n_folds = n_folds
        self.random_state = random_state

    def _fit_kw(self, w: np.ndarray | None) -> dict[str, Any]:
        if w is None:
            return {}
        name = "model__sample_weight" if hasattr(self.component, "steps") else "sample_weight"
        return {name: w}

    def _check(self, X: Any) -> list[str]:
        cols = [str(c) for c in self.linear_columns]
        if not cols:
            raise ConfigError("PartiallyLinearRegressor needs at least one linear column")
        if self.component is None:
            raise ConfigError("PartiallyLinearRegressor needs a component estimator")
        if int(self.n_folds) < 2:
            raise ConfigError(f"n_folds={self.n_folds!r}: give at least 2 inner folds")
        if not isinstance(X, pd.DataFrame):
            raise ConfigError(
                f"PartiallyLinearRegressor takes a DataFrame with the columns {cols}, found "
                f"{type(X).__name__}"
            )
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ConfigError(f"PartiallyLinearRegressor: columns {missing} are not in X")
        return cols

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> PartiallyLinearRegressor:
        """Fit l and m per inner fold, theta from their out-of-fold residuals. Returns self."""
        cols = self._check(X)
        y = np.asarray(y, dtype=np.float64)
        M = X[cols].to_numpy(dtype=np.float64)
        n, k = M.shape
        if n < 2 * int(self.n_folds):
            raise ConfigError(
                f"PartiallyLinearRegressor: {n} training rows for {self.n_folds} inner folds; "
                "give at least two rows per fold"
            )
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        v = int(self.n_folds)
        fold = np.random.default_rng(int(self.random_state)).permutation(n) % v
        r = np.empty(n)
        s = np.empty((n, k))
        self.l_, self.m_ = [], []
        for f in range(v):
            tr, te = fold != f, fold == f
            kw = self._fit_kw(None if w is None else w[tr])
            lf = clone(self.component).fit(X[tr], y[tr], **kw)
            mf = [clone(self.component).fit(X[tr], M[tr, j], **kw) for j in range(k)]
            r[te] = y[te] - lf.predict(X[te])
            for j in range(k):
                s[te, j] = M[te, j] - mf[j].predict(X[te])
            self.l_.append(lf)
            self.m_.append(mf)
        ww = np.ones(n) if w is None else w
        sw = s * ww[:, None]
        gram = s.T @ sw
        theta, *_ = np.linalg.lstsq(gram, sw.T @ r, rcond=None)
        # HC0 sandwich of the residual regression (reported, not used by the predictions)
        e = r - s @ theta
        meat = (sw * e[:, None]).T @ (sw * e[:, None])
        bread = np.linalg.pinv(gram)
        self.theta_ = np.asarray(theta, dtype=np.float64)
        self.theta_se_ = np.sqrt(np.clip(np.diag(bread @ meat @ bread), 0.0, None))
        self.n_features_in_ = X.shape[1]
        return self

    def _g(self, X: pd.DataFrame) -> np.ndarray:
        """g(x) = E[Y - M' theta | X] = l(x) - m(x)' theta, averaged over the inner folds."""
        parts = []
        for lf, mf in zip(self.l_, self.m_, strict=True):
            m = np.column_stack([np.asarray(mj.predict(X), dtype=np.float64) for mj in mf])
            parts.append(np.asarray(lf.predict(X), dtype=np.float64) - m @ self.theta_)
        return np.mean(parts, axis=0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """M' theta + g(X); shape (n,)."""
        cols = self._check(X)
        M = X[cols].to_numpy(dtype=np.float64)
        return M @ self.theta_ + self._g(X)
