"""The import contract of mlearner_dist: layers, and frameworks only in backends/.

Run as ``python tests/import_contract.py [PACKAGE_DIR]`` (``make lint`` does); exits 1 and lists
every violation. The layers, from the bottom (a module may import its own layer and lower ones):

0. ``core`` (and ``exceptions``, the package ``__init__``): numpy, pandas, scipy, scikit-learn,
   statsmodels, openTSNE; of mlearner_dist only ``core.*`` and ``exceptions``;
1. framework-free helpers: ``config``, ``stages``, ``datasets``, ``plots``, ``report``,
   ``summary``, ``scoring``, ``tracking``, ``result_schema``, ``record``;
2. ``backends.*``: the only modules that import pyspark, dask, dask_ml, distributed or mlflow;
3. ``pipeline`` (driver and stage registry), ``pipeline_stages``, ``pipeline_split``,
   ``run_context``, ``study``, ``verify``: compose stages and engines;
4. ``cli``;
5. ``jobs/*.py`` (outside the package): thin wrappers around the CLI.

Every ``import`` statement counts, including those inside functions: a lazy import is still a
dependency. docs/architecture.md shows the same map.

A module may not import an underscore-prefixed name (``from mlearner_dist.x import _name``) from
another mlearner_dist module: what other modules use is public in the module that owns it.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

FRAMEWORKS = (
    "pyspark",
    "dask",
    "dask_ml",
    "distributed",
    "mlflow",
    "dask_databricks",
    "deltalake",
    "databricks",
)
HELPERS = (
    "config",
    "stages",
    "datasets",
    "plots",
    "report",
    "summary",
    "scoring",
    "tracking",
    "result_schema",
    "record",
)
LAYER_NAMES = ("core", "helpers", "backends", "pipeline/study", "cli", "jobs")


@dataclass(frozen=True)
class Violation:
    """One import that breaks the contract."""

    path: str
    line: int
    module: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.imported}: {self.why}"


def layer_of(module: str) -> int:
    """Layer number of a dotted module name inside the package (``mlearner_dist.x.y``)."""
    parts = module.split(".")
    if parts[0] == "jobs":
        return 5
    rest = parts[1:]
    if not rest or rest[0] in ("__init__", "exceptions", "core"):
        return 0
    if rest[0] in HELPERS:
        return 1
    if rest[0] == "backends":
        return 2
    if rest[0] in ("pipeline", "pipeline_split", "pipeline_stages", "run_context", "study"):
        return 3
    if rest[0] == "verify":
        return 3
    if rest[0] in ("cli", "__main__"):
        return 4
    raise ValueError(
        f"{module} is on no floor of the layer map: add it to tests/import_contract.py and "
        "docs/architecture.md"
    )


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    return ".".join(rel.parts)


def _source(node: ast.ImportFrom, module: str) -> str:
    """The absolute module a ``from ... import`` statement of ``module`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.rsplit(".", 1)[0].split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = _source(node, module)
            if name == "mlearner_dist" or name.endswith(".mlearner_dist"):
                out.extend((node.lineno, f"mlearner_dist.{a.name}") for a in node.names)
            else:
                out.append((node.lineno, name))
    return out


def _private_imports(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """``(line, "mlearner_dist.x._name")`` for each private name imported from another module."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _source(node, module)
        if source.split(".")[0] != "mlearner_dist" or source == module:
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                out.append((node.lineno, f"{source}.{name}"))
    return out


def _internal_target(imported: str) -> str | None:
    if imported == "mlearner_dist":
        return "mlearner_dist.__init__"
    if imported.startswith("mlearner_dist."):
        return imported
    return None


def check_file(path: Path, module: str) -> list[Violation]:
    """Violations of one source file whose dotted module name is ``module``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = layer_of(module)
    problems: list[Violation] = [
        Violation(
            str(path),
            line,
            module,
            imported,
            "a private (underscore) name of another module; make it public where it is defined",
        )
        for line, imported in _private_imports(tree, module)
    ]
    for line, imported in _imports(tree, module):
        top = imported.split(".")[0]
        if top in FRAMEWORKS and own != 2:
            problems.append(
                Violation(
                    str(path),
                    line,
                    module,
                    imported,
                    f"{top} may be imported only in mlearner_dist/backends/ "
                    f"(this module is in layer {LAYER_NAMES[own]})",
                )
            )
            continue
        target = _internal_target(imported)
        if target is None:
            continue
        try:
            theirs = layer_of(target)
        except ValueError:
            continue  # a name imported from a package __init__ (``from mlearner_dist import x``)
        if theirs > own:
            problems.append(
                Violation(
                    str(path),
                    line,
                    module,
                    imported,
                    f"layer {LAYER_NAMES[own]} may not import layer {LAYER_NAMES[theirs]}",
                )
            )
        elif own == 0 and not (
            target.startswith("mlearner_dist.core")
            or target in ("mlearner_dist.exceptions", "mlearner_dist.__init__")
        ):
            problems.append(
                Violation(
                    str(path), line, module, imported, "core imports only core and exceptions"
                )
            )
    return problems


def check_tree(package_dir: Path, jobs_dir: Path | None = None) -> list[Violation]:
    """Every violation under ``package_dir`` (the ``mlearner_dist`` folder) and ``jobs_dir``."""
    problems: list[Violation] = []
    for path in sorted(package_dir.rglob("*.py")):
        problems.extend(check_file(path, _module_name(path, package_dir)))
    if jobs_dir is not None and jobs_dir.is_dir():
        for path in sorted(jobs_dir.glob("*.py")):
            problems.extend(check_file(path, f"jobs.{path.stem}"))
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "mlearner_dist"
    jobs = root.parent / "jobs"
    try:
        problems = check_tree(root, jobs)
    except ValueError as exc:
        print(f"import contract: {exc}")
        return 1
    for p in problems:
        print(p)
    if problems:
        print(f"import contract: {len(problems)} violation(s)")
        return 1
    print(f"import contract: kept ({root})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
