"""``mlearner verify RESULT.json``: re-run an analysis from its record; does it reproduce?

The configuration recorded in ``result.json`` is re-run in a fresh folder (MLflow tracking, figures
and the HTML report off); the new result is compared with the recorded one: the fingerprint of the
rows used, ``declared``, the chosen configuration, ``p_leaf``, the threshold and every subgroup's
rule, size and effects (relative tolerance ``rtol``; the threshold of null calibration is an order
statistic of replicates, so it reproduces exactly for the same seeds and code).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from mlearner_dist.config import config_from_dict
from mlearner_dist.exceptions import ConfigError

__all__ = ["compare_results", "verify_result"]


def _num_close(a: Any, b: Any, rtol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)


def compare_results(old: dict[str, Any], new: dict[str, Any], *, rtol: float = 1e-6) -> list[str]:
    """Every difference that matters between a recorded and a re-run result (empty: reproduced)."""
    diffs: list[str] = []
    old_hash = ((old.get("record") or {}).get("data_hash") or {}).get("sha256")
    new_hash = ((new.get("record") or {}).get("data_hash") or {}).get("sha256")
    if old_hash is None:
        diffs.append("the recorded result has no data fingerprint (made before schema 1.2)")
    elif old_hash != new_hash:
        diffs.append(f"the data differ: fingerprint {old_hash[:12]} recorded, {new_hash} now")
    if old.get("declared") != new.get("declared"):
        diffs.append(f"declared: {old.get('declared')} recorded, {new.get('declared')} now")
    for key in ("k", "tree_id", "n_leaves", "variables"):
        a, b = (old.get("chosen") or {}).get(key), (new.get("chosen") or {}).get(key)
        if a != b:
            diffs.append(f"chosen {key}: {a} recorded, {b} now")
    for key in ("p_leaf", "threshold"):
        if not _num_close(old.get(key), new.get(key), rtol):
            diffs.append(f"{key}: {old.get(key)} recorded, {new.get(key)} now")
    so, sn = old.get("subgroups") or [], new.get("subgroups") or []
    if len(so) != len(sn):
        diffs.append(f"{len(so)} subgroups recorded, {len(sn)} now")
    for a, b in zip(so, sn, strict=False):
        if (a.get("rule"), a.get("n")) != (b.get("rule"), b.get("n")):
            diffs.append(f"subgroup {a.get('leaf')}: {a.get('rule')!r} (n={a.get('n')}) recorded, "
                         f"{b.get('rule')!r} (n={b.get('n')}) now")
            continue
        for name in ("indirect", "direct", "total"):
            ea, eb = a.get(name) or {}, b.get(name) or {}
            for part in ("estimate", "ci_low", "ci_high"):
                if not _num_close(ea.get(part), eb.get(part), rtol):
                    diffs.append(
                        f"subgroup {a.get('leaf')} {name} {part}: {ea.get(part)} recorded, "
                        f"{eb.get(part)} now"
                    )
    return diffs


def verify_result(
    result_path: str | Path, *, output: str | Path | None = None, rtol: float = 1e-6
) -> tuple[bool, list[str], Path]:
    """Re-run the analysis recorded in ``result_path``.

    Parameters
    ----------
    result_path : path
        A ``result.json``.
    output : path, optional
        Where the re-run writes (default: a new temporary folder, kept for inspection).
    rtol : float
        Relative tolerance for numbers.

    Returns
    -------
    reproduced : bool
    differences : list of str
    output : Path
        The re-run's folder.
    """
    from mlearner_dist.pipeline import run_pipeline

    path = Path(result_path)
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read a result.json ({exc})") from exc
    if "config" not in old:
        raise ConfigError(f"{path}: no 'config' key; is this a result.json of mlearner-dist?")
    values = dict(old["config"])
    values["tracking"] = {**values.get("tracking", {}), "enabled": False}
    values["report"] = {**values.get("report", {}), "figures": False, "html": False}
    cfg = config_from_dict(values)
    out = Path(output) if output else Path(tempfile.mkdtemp(prefix="mlearner-verify-"))
    new = run_pipeline(cfg, out)
    assert new is not None
    diffs = compare_results(old, new, rtol=rtol)
    return not diffs, diffs, out
