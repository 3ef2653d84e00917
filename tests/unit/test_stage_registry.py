"""The stage registry names every stage once, in order, with what its fingerprint covers."""

from __future__ import annotations

from mlearner_dist.config import Config
from mlearner_dist.pipeline import STAGE_SPECS
from mlearner_dist.stages import STAGES


def test_registry_matches_the_stage_order_and_reads_only_earlier_stages():
    assert tuple(STAGE_SPECS) == tuple(STAGES)
    seen: set[str] = set()
    for name, spec in STAGE_SPECS.items():
        assert spec.name == name
        assert set(spec.upstream) <= seen, f"{name} reads a later stage"
        assert spec.outputs and callable(spec.run)
        seen.add(name)


def test_every_fingerprinted_section_exists_in_the_config():
    keys = set(Config().to_dict())
    for spec in STAGE_SPECS.values():
        assert set(spec.sections) <= keys, (spec.name, set(spec.sections) - keys)
