"""Every registered implementation against its interface's contract suite.

Ids read `kind:name-check`, e.g. `translator:cyclegan-test_preserves_shape`.
"""

import pytest

from aist_core.registry import discover
from aist_core.testing.contracts import contract_cases, run_case

REGISTRY = discover()
CASES = contract_cases(REGISTRY)


@pytest.mark.parametrize("kind,name,check", CASES, ids=[f"{k}:{n}-{c}" for k, n, c in CASES])
def test_contract(kind, name, check, tmp_path):
    run_case(REGISTRY, kind, name, check, tmp_path)
