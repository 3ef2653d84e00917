"""Stage bookkeeping: atomic outputs, manifests, and skip-or-rerun decisions.

Every stage writes into a temporary sibling path and renames it into place only when it is complete,
then writes a manifest ``_manifests/<stage>.json`` holding the fingerprint of its configuration and
inputs, its row counts and its seed. A re-run skips a stage whose manifest matches; a changed
configuration or input changes the fingerprint, so the stage and (through their input fingerprints)
every later stage are recomputed. A run killed mid-stage leaves at most a ``.tmp-*`` path, which
the next run removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlearner_dist.core.jsonable import to_jsonable
from mlearner_dist.exceptions import StageError

logger = logging.getLogger(__name__)

#: Stages in the order they run, and the outputs each one commits under the output directory.
STAGES: tuple[str, ...] = (
    "validate",
    "effects",
    "embed",
    "cluster",
    "profile",
    "calibrate",
    "report",
)
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "validate": ("units",),
    "effects": ("effects",),
    "embed": ("embedding",),
    "cluster": ("clusters",),
    "profile": ("profiles.json", "trees.pkl"),
    "calibrate": ("calibration.json",),
    "report": ("result.json",),
}
MANIFEST_DIR = "_manifests"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Manifest:
    """What a finished stage records about itself."""

    stage: str
    fingerprint: str
    rows: dict[str, int]
    seed: int
    seconds: float
    finished: str
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "seed": self.seed,
            "seconds": self.seconds,
            "finished": self.finished,
            "extra": self.extra,
        }


def fingerprint(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def manifest_path(output: Path, stage: str) -> Path:
    """Where a stage's manifest lives."""
    return output / MANIFEST_DIR / f"{stage}.json"


def read_manifest(output: Path, stage: str) -> Manifest | None:
    """The stage's manifest, or None when it has not finished (or its outputs are gone)."""
    path = manifest_path(output, stage)
    if not path.is_file():
        return None
    for name in STAGE_OUTPUTS.get(stage, ()):
        if not (output / name).exists():
            return None
    d = json.loads(path.read_text())
    return Manifest(**d)


def write_manifest(output: Path, manifest: Manifest) -> None:
    """Write a manifest atomically (the stage counts as finished only after this)."""
    path = manifest_path(output, manifest.stage)
    write_text_atomic(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True))


def invalidate_from(output: Path, stage: str) -> None:
    """Remove the manifests of ``stage`` and every later stage (forces them to run again)."""
    start = STAGES.index(stage)
    for later in STAGES[start:]:
        path = manifest_path(output, later)
        if path.exists():
            path.unlink()


def clean_partial(output: Path) -> list[str]:
    """Delete temporary paths a killed run left behind; return their names."""
    removed = []
    if not output.exists():
        return removed
    for child in output.iterdir():
        if child.name.startswith(TMP_PREFIX):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child.name)
    if removed:
        logger.warning("removed partial output of an interrupted run: %s", ", ".join(removed))
    return removed


def temp_path(final: Path) -> Path:
    """A temporary sibling of ``final`` (same filesystem, so the rename is atomic)."""
    return final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"


def commit_path(tmp: Path, final: Path) -> None:
    """Move a completed temporary output into place, replacing an older one."""
    if final.exists():
        old = final.parent / f"{TMP_PREFIX}old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        os.replace(tmp, final)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so readers see either the old or the whole new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON atomically (NaN written as null)."""
    write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False))


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; commit it to ``final`` only if the block succeeds.

    Examples
    --------
    >>> with atomic_output(out / "effects") as tmp:  # doctest: +SKIP
    ...     frame.to_parquet(tmp)
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    if not tmp.exists():
        raise StageError(f"the stage did not write its output {final.name}")
    commit_path(tmp, final)


class StageTimer:
    """Times a stage and logs its duration and rows."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> StageTimer:
        self.start = time.perf_counter()
        logger.info("stage %s: started", self.stage)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        logger.info("stage %s: %.1f s", self.stage, self.seconds)
