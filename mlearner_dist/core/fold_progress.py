"""Progress of cross-fitting: one line per fold with the models fitted in each nuisance group.

:func:`~mlearner_dist.core.nuisance.fit_fold_models` reports every model it fits to an
``on_model(name, group, n_rows, seconds)`` hook. :class:`FoldTally` is that hook: it counts the
models, their rows and their time by nuisance group (``outcome``, ``mediator``, ``propensity``).
:func:`cross_fitting_progress` is the :class:`~mlearner_dist.core.progress.Progress` that the
in-memory path (:func:`~mlearner_dist.core.effects.cross_fit_effects`) and the Spark path update
once per fold, so a run shows lines such as::

    cross-fitting: 2/5 (40%) 6.1 s, about 9 s left - fold 2/5 on 719 units: outcome 4 models
    (4.0 s), mediator 2 models (1.1 s), propensity 1 model (0.0 s)
"""

from __future__ import annotations

from mlearner_dist.core.progress import Progress

__all__ = ["NUISANCE_GROUPS", "FoldTally", "cross_fitting_progress", "report_fold"]

#: The nuisance model groups, as ``effects.learners`` names them.
NUISANCE_GROUPS = ("outcome", "mediator", "propensity")


class FoldTally:
    """The models fitted on one training set, counted by nuisance group.

    Call it as ``on_model(name, group, n_rows, seconds)`` after each fit.

    Attributes
    ----------
    models, rows : dict of str to int
        Models fitted and the most training rows of one model, per group.
    seconds : dict of str to float
        Wall time of the group's fits (including an ``auto`` learner choice).
    """

    def __init__(self) -> None:
        self.models = dict.fromkeys(NUISANCE_GROUPS, 0)
        self.rows = dict.fromkeys(NUISANCE_GROUPS, 0)
        self.seconds = dict.fromkeys(NUISANCE_GROUPS, 0.0)

    def __call__(self, name: str, group: str, n_rows: int, seconds: float) -> None:
        """Count one fitted model ``name`` of ``group`` on ``n_rows`` rows in ``seconds``."""
        self.models[group] = self.models.get(group, 0) + 1
        self.rows[group] = max(self.rows.get(group, 0), int(n_rows))
        self.seconds[group] = self.seconds.get(group, 0.0) + float(seconds)

    def summary(self) -> str:
        """``"outcome 4 models (1.2 s), mediator 2 models (0.3 s), ..."``: groups with models."""
        parts = [
            f"{g} {n} model{'s' if n != 1 else ''} ({self.seconds[g]:.1f} s)"
            for g, n in self.models.items()
            if n
        ]
        return ", ".join(parts) if parts else "no models"


def cross_fitting_progress(n_steps: int, desc: str = "cross-fitting") -> Progress:
    """A :class:`~mlearner_dist.core.progress.Progress` that logs every one of ``n_steps`` folds.

    Parameters
    ----------
    n_steps : int
        Training sets fitted: ``n_folds`` when cross-fitting, 1 for the in-sample reference.
    desc : str
        The line's prefix.
    """
    steps = max(1, int(n_steps))
    return Progress(steps, desc, every=1.0 / steps)


def report_fold(bar: Progress, what: str, n_train: int, tally: FoldTally) -> str:
    """Count one training set done on ``bar``; returns the message (``what`` on ``n_train``)."""
    message = f"{what} on {n_train} units: {tally.summary()}"
    bar.update(1, message=message)
    return message
