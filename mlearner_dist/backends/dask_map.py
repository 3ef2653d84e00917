"""Null replicates (or any independent items) as Dask futures: the core's ``map_fn`` seam.

:func:`mlearner_dist.core.calibration.null_calibration` takes ``map_fn(func, items) -> list``.
:func:`dask_map` returns one that ships ``func`` (with the data it closes over) to the workers
once, runs one task per item, logs progress as tasks finish, and returns the results in the order
of ``items``, so the outcome does not depend on the number of workers or on which finishes first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from distributed import as_completed

from mlearner_dist.core.progress import Progress

__all__ = ["dask_map"]

logger = logging.getLogger(__name__)


def _call(func: Callable[[Any], Any], item: Any) -> Any:
    return func(item)


def dask_map(client: Any, *, label: str = "null replicate") -> Callable[..., list[Any]]:
    """A ``map_fn`` running each item as a task on ``client``'s workers.

    Parameters
    ----------
    client : distributed.Client
    label : str
        What an item is, for the progress lines.

    Returns
    -------
    callable
        ``map_fn(func, items) -> list`` with results in item order.
    """

    def map_fn(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        shared = client.scatter(func, broadcast=True)
        futures = client.map(_call, [shared] * len(items), items, pure=False)
        position = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        n_workers = len(client.scheduler_info().get("workers", {}))
        with Progress(len(futures), f"{label}s on {n_workers} Dask workers") as bar:
            for fut in as_completed(futures):
                out[position[fut.key]] = fut.result()
                bar.update()
        return out

    # how many replicates run at once, for the projected calibration time (MLearner.fit_frame)
    map_fn.n_workers = max(1, len(client.scheduler_info().get("workers", {})))  # type: ignore[attr-defined]
    return map_fn
