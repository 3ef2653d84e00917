"""The schema of ``result.json``: the contract users' scripts read.

:data:`RESULT_SCHEMA` is a JSON Schema (draft 2020-12). The report stage validates every
``result.json`` against it before writing (:func:`validate_result`), the end-to-end tests validate
real outputs, and docs/result_schema.md is generated from it (:func:`schema_markdown`).

Versioning: :data:`SCHEMA_VERSION` is written into every result as ``schema_version``. Adding a key
keeps the version's major number and raises the minor one; removing or renaming a key, or changing
its type, raises the major number and is said in CHANGELOG.md. Objects allow keys beyond those
listed so later versions can extend them.
"""

from __future__ import annotations

from typing import Any

from mlearner_dist.exceptions import MLearnerError

SCHEMA_VERSION = "1.4"

_NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}

_CI: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["estimate", "ci_low", "ci_high"],
    "properties": {
        "estimate": _NUMBER_OR_NULL,
        "ci_low": _NUMBER_OR_NULL,
        "ci_high": _NUMBER_OR_NULL,
    },
}

_EFFECTS: dict[str, Any] = {
    "type": "object",
    "required": ["indirect", "direct", "total", "prop_mediated"],
    "properties": {name: _CI for name in ("indirect", "direct", "total", "prop_mediated")},
}

_CONFIGURATION: dict[str, Any] = {
    "type": "object",
    "required": ["k", "tree_id", "n_leaves", "variables", "selected_for_test", "p_y", "p_m"],
    "properties": {
        "k": {"type": "integer", "minimum": 2},
        "tree_id": {"type": "integer", "minimum": 0},
        "n_leaves": {"type": "integer", "minimum": 1},
        "variables": {"type": "array", "items": {"type": "string"}},
        "cv_error": {"type": "number"},
        "selected_for_test": {"type": "boolean"},
        "p_y": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "p_m": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "p_score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "raw_n_leaves": {"type": "integer", "minimum": 1},
    },
}

_SENSITIVITY_CURVE: dict[str, Any] = {
    "type": "object",
    "required": ["n", "rho", "estimate", "ci_low", "ci_high", "rho_zero", "rho_ci_covers_zero"],
    "properties": {
        "n": {"type": "integer"},
        "rho": {"type": "array", "items": {"type": "number"}},
        "estimate": {"type": "array", "items": {"type": "number"}},
        "ci_low": {"type": "array", "items": {"type": "number"}},
        "ci_high": {"type": "array", "items": {"type": "number"}},
        "rho_zero": {"type": "number"},
        "rho_ci_covers_zero": {"type": ["number", "null"]},
    },
}

RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mlearner-dist result.json",
    "type": "object",
    "required": [
        "schema_version",
        "run_id",
        "mlflow_run_id",
        "created",
        "version",
        "config",
        "row_account",
        "has_mediator",
        "average_effects",
        "nuisance_diagnostics",
        "embedding",
        "clustering",
        "configurations",
        "chosen",
        "p_leaf",
        "p_leaf_y",
        "p_leaf_m",
        "threshold",
        "calibration",
        "declared",
        "subgroups",
        "record",
        "timings",
    ],
    "properties": {
        "schema_version": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "run_id": {"type": "string"},
        "mlflow_run_id": {"type": ["string", "null"]},
        "mlflow_model_uri": {"type": ["string", "null"], "pattern": "^models:/"},
        "mlflow_model_id": {"type": ["string", "null"]},
        "source": {"type": ["object", "null"]},
        "targets": {"type": "object"},
        "created": {"type": "string"},
        "version": {"type": "string"},
        "config": {"type": "object", "required": ["columns", "effects", "calibration"]},
        "row_account": {
            "type": "object",
            "required": ["n_input", "n_used", "removed"],
            "properties": {
                "n_input": {"type": "integer", "minimum": 0},
                "n_used": {"type": "integer", "minimum": 0},
                "removed": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "has_mediator": {"type": "boolean"},
        "average_effects": _EFFECTS,
        "nuisance_diagnostics": {"type": "object"},
        "embedding": {"type": "object"},
        "clustering": {"type": "object"},
        "configurations": {"type": "array", "minItems": 1, "items": _CONFIGURATION},
        "chosen": {
            "allOf": [
                _CONFIGURATION,
                {
                    "required": ["response"],
                    "properties": {
                        "response": {"enum": ["m", "y", "score_indirect", "score_total"]}
                    },
                },
            ]
        },
        "p_leaf": {"type": "number", "minimum": 0, "maximum": 1},
        "p_leaf_y": {"type": "number", "minimum": 0, "maximum": 1},
        "p_leaf_m": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "calibration": {
            "type": "object",
            "required": ["mode", "alpha", "threshold", "n_replicates", "null_p_leaf", "how"],
            "properties": {
                "mode": {"enum": ["fixed", "null", "split"]},
                "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "n_replicates": {"type": "integer", "minimum": 0},
                "null_p_leaf": {"type": "array", "items": {"type": "number"}},
                "mc_pvalue": _NUMBER_OR_NULL,
                "mc_se": _NUMBER_OR_NULL,
                "p_decision": {"type": "number"},
                "fallback": {"type": "string"},
                "how": {"type": "string"},
            },
        },
        "declared": {"type": "boolean"},
        "subgroups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "leaf",
                    "rule",
                    "n",
                    "indirect",
                    "direct",
                    "total",
                    "prop_mediated",
                    "unadjusted",
                ],
                "properties": {
                    "leaf": {"type": "integer"},
                    "rule": {"type": "string"},
                    "n": {"type": "integer", "minimum": 0},
                    "indirect": _CI,
                    "direct": _CI,
                    "total": _CI,
                    "prop_mediated": _CI,
                    "unadjusted": {
                        "type": "object",
                        "properties": {
                            name: _CI for name in ("indirect", "direct", "total", "prop_mediated")
                        },
                    },
                    "note": {"type": "string"},
                },
            },
        },
        "sensitivity": {
            "type": ["object", "null"],
            "required": ["method", "whole", "subgroups"],
            "properties": {
                "method": {"type": "string"},
                "whole": _SENSITIVITY_CURVE,
                "subgroups": {"type": "array", "items": {"type": "object"}},
            },
        },
        "stability": {
            "type": ["object", "null"],
            "required": ["n_seeds", "share_declared", "ari", "median_ari", "rule_recurrence"],
            "properties": {
                "n_seeds": {"type": "integer", "minimum": 1},
                "seeds": {"type": "array", "items": {"type": "integer"}},
                "share_declared": {"type": "number", "minimum": 0, "maximum": 1},
                "p_leaf": {"type": "array", "items": {"type": "number"}},
                "ari": {"type": "array", "items": {"type": "number"}},
                "median_ari": {"type": "number"},
                "rule_recurrence": {"type": "object"},
                "variables": {"type": "object"},
                "how": {"type": "string"},
            },
        },
        "record": {
            "type": "object",
            "required": ["data_hash", "config_fingerprint", "version", "code_commit", "libraries"],
            "properties": {
                "data_hash": {
                    "type": ["object", "null"],
                    "required": ["n_rows", "columns", "sha256"],
                    "properties": {
                        "n_rows": {"type": "integer", "minimum": 0},
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    },
                },
                "config_fingerprint": {"type": "string"},
                "version": {"type": "string"},
                "code_commit": {"type": ["string", "null"]},
                "python": {"type": "string"},
                "libraries": {"type": "object"},
            },
        },
        "timings": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
    },
}


def result_problems(doc: Any) -> list[str]:
    """Every way ``doc`` breaks :data:`RESULT_SCHEMA`, as ``path: message`` lines."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(RESULT_SCHEMA)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message}")
    return out


def validate_result(doc: Any) -> None:
    """Raise :class:`MLearnerError` listing every schema problem of a result document."""
    problems = result_problems(doc)
    if problems:
        raise MLearnerError(
            f"result.json does not match its schema (version {SCHEMA_VERSION}); this is a bug "
            "in mlearner-dist, please report it with the run's outputs:\n  "
            + "\n  ".join(problems[:20])
        )


def schema_markdown() -> str:
    """The key list of docs/result_schema.md, generated from :data:`RESULT_SCHEMA`."""
    lines = [
        "# result.json",
        "",
        f"Schema version {SCHEMA_VERSION} (`mlearner_dist.result_schema.RESULT_SCHEMA`, checked "
        "when the report stage writes the file). Generated by `make docs`; do not edit.",
        "",
        "| key | type | required |",
        "|---|---|---|",
    ]

    def kind(node: dict[str, Any]) -> str:
        if "enum" in node:
            return " or ".join(repr(v) for v in node["enum"])
        if "allOf" in node:
            return "object"
        t = node.get("type", "any")
        return " or ".join(t) if isinstance(t, list) else str(t)

    def walk(node: dict[str, Any], prefix: str) -> None:
        if "allOf" in node:
            merged: dict[str, Any] = {"properties": {}, "required": []}
            for part in node["allOf"]:
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += part.get("required", [])
            node = merged
        required = set(node.get("required", []))
        for name, child in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            lines.append(f"| `{key}` | {kind(child)} | {'yes' if name in required else 'no'} |")
            if child.get("properties") or "allOf" in child:
                walk(child, key + ".")
            items = child.get("items")
            if isinstance(items, dict) and items.get("properties"):
                walk(items, key + "[].")

    walk(RESULT_SCHEMA, "")
    return "\n".join(lines) + "\n"


__all__ = [
    "RESULT_SCHEMA",
    "SCHEMA_VERSION",
    "result_problems",
    "schema_markdown",
    "validate_result",
]
