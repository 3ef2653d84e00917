"""Configuration: files, overrides, unknown keys and ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlearner_dist.config import (
    Config,
    config_from_dict,
    describe_keys,
    load_config,
    parse_override,
)
from mlearner_dist.exceptions import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_base_yaml_lists_exactly_the_defaults():
    assert load_config([CONF / "base.yaml"]) == Config()


@pytest.mark.parametrize(
    "name", ["base", "local", "jobs_ii", "jobs_ii_total", "simulated", "reference"]
)
def test_every_shipped_file_loads(name):
    load_config([CONF / f"{name}.yaml"])


def test_later_files_and_overrides_win(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text(yaml.safe_dump({"cluster": {"k_max": 4}, "random_state": 1}))
    second = tmp_path / "b.yaml"
    second.write_text(yaml.safe_dump({"cluster": {"k_max": 3}}))
    cfg = load_config([first, second], ["random_state=7", "columns.covariates=[X1, X2]"])
    assert cfg.cluster.k_max == 3
    assert cfg.cluster.k_min == 2
    assert cfg.random_state == 7
    assert cfg.columns.covariates == ("X1", "X2")


def test_jobs_ii_roles():
    roles = load_config([CONF / "jobs_ii.yaml"]).roles
    assert roles.treatment == "treat"
    assert roles.mediators == ("job_seek",)
    assert "education" in roles.covariates
    assert roles.strata == ()


def test_strata_reach_the_roles():
    roles = load_config([], ["columns.strata=[site, sex]", "columns.covariates=[sex, X1]"]).roles
    assert roles.strata == ("site", "sex")
    assert roles.used_columns[-1] == "site" and roles.used_columns.count("sex") == 1


def test_cluster_and_weight_reach_the_roles():
    roles = load_config([], ["columns.cluster=school", "columns.weight=w"]).roles
    assert roles.cluster == "school" and roles.weight == "w"
    assert roles.used_columns[-2:] == ("school", "w")
    plain = load_config([], []).roles
    assert plain.cluster is None and plain.weight is None


def test_unknown_key_names_it_and_lists_allowed():
    with pytest.raises(ConfigError, match=r"cluster\.k_maxx.*allowed: \['k_min', 'k_max'"):
        load_config([], ["cluster.k_maxx=3"])
    with pytest.raises(ConfigError, match=r"unknown key.*'clusters'"):
        config_from_dict({"clusters": {}})


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("effects.n_folds=1", r"effects\.n_folds=1 is out of range; allowed: an integer from 2"),
        ("calibration.alpha=1.5", r"calibration\.alpha=1\.5 is out of range"),
        ("effects.estimator=magic", r"effects\.estimator='magic' is not allowed; choose one of"),
        ("cluster.k_min=5", r"K range is empty"),
        ("embed.n_landmarks=60", r"perplexity=30\.0 is too large for embed\.n_landmarks=60"),
        ("cluster.k_max=three", r"cluster\.k_max: expected an integer"),
        ("embed.kernel_power=3", r"kernel_power=3 is out of range; allowed: 2"),
        ("embed.effects=[indirect, wrong]", r"embed\.effects=.*give 1 to 3 of"),
    ],
)
def test_bad_values_are_named(override, pattern):
    overrides = [override]
    if override.startswith("cluster.k_min"):
        overrides.append("cluster.k_max=4")
    with pytest.raises(ConfigError, match=pattern):
        load_config([], overrides)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("cluster.k_max")
    with pytest.raises(ConfigError, match=r"section\.key"):
        parse_override("cluster..k=1")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "nope.yaml"])


def test_reference_fidelity_switches_unset_keys_only():
    cfg = load_config([CONF / "reference.yaml"])
    assert cfg.effects.estimator == "reference"
    assert cfg.embed.kernel_power == 4
    assert cfg.profile.tree_choice == "first_pareto"
    assert cfg.calibration.mode == "fixed"
    kept = load_config([CONF / "reference.yaml"], ["calibration.mode=null"])
    assert kept.calibration.mode == "null"


def test_config_is_frozen_and_serialisable():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.random_state = 3  # type: ignore[misc]
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == Config().fingerprint()
    assert cfg.fingerprint(["cluster"]) != load_config([], ["cluster.k_max=3"]).fingerprint(
        ["cluster"]
    )


def test_describe_keys_covers_every_leaf():
    keys = {k for k, _, _ in describe_keys()}
    assert {"cluster.k_max", "compute.dask.scheduler_address", "embed.kernel_power"} <= keys


def test_configuration_doc_is_current():
    from mlearner_dist.config import keys_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == keys_markdown(), "run `make docs` to regenerate docs/configuration.md"


@pytest.mark.parametrize(
    "override, key",
    [
        ("tracking.uri=https://alice:hunter2@mlflow.example.com", "tracking.uri"),
        ("data.source=abfss://me:k3y@container/path", "data.source"),
        (
            "compute.spark.conf={fs.azure.account.key.acct.dfs.core.windows.net: abc123}",
            "fs.azure.account.key",
        ),
        ("compute.spark.conf={spark.hadoop.fs.s3a.secret.key: abc}", "secret.key"),
    ],
)
def test_credentials_in_the_config_are_refused_with_the_way_out(override, key):
    with pytest.raises(ConfigError) as err:
        load_config([], [override])
    text = str(err.value)
    assert key in text and ("environment" in text or "secrets/" in text)
    for secret in ("hunter2", "k3y", "abc123"):
        assert secret not in text


def test_secret_references_and_plain_urls_are_accepted(monkeypatch):
    from mlearner_dist.backends.spark_session import resolve_env_reference

    cfg = load_config(
        [],
        [
            "tracking.uri=https://mlflow.example.com",
            "compute.spark.conf={fs.azure.account.key.a.dfs.core.windows.net: '${AZ_KEY}', "
            "spark.hadoop.fs.s3a.secret.key: '{{secrets/scope/s3}}'}",
        ],
    )
    value = cfg.compute.spark.conf["fs.azure.account.key.a.dfs.core.windows.net"]
    monkeypatch.setenv("AZ_KEY", "from-env")
    assert resolve_env_reference("k", value) == "from-env"
    assert resolve_env_reference("k", "plain") == "plain"
    monkeypatch.delenv("AZ_KEY")
    with pytest.raises(ConfigError, match="AZ_KEY"):
        resolve_env_reference("k", value)
