"""Discovery through entry points: lazy, fault-isolated, duplicate-aware."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aist_core.hookspecs import hookimpl
from aist_core.interfaces import KINDS
from aist_core.registry import PluginError, discover


class DuplicateEdge:
    @hookimpl
    def aist_register(self, registry):
        registry.add("annotation_loss", "edge", "somewhere_else:EdgeLoss")


class Exploding:
    @hookimpl
    def aist_register(self, registry):
        raise RuntimeError("boom in hook")


def test_first_party_and_example_plugins_are_discovered():
    registry = discover()
    assert "aist" in registry.distributions and "aist-edge-loss" in registry.distributions
    assert registry.get("annotation_loss", "edge").distribution == "aist-edge-loss"


def test_discovery_imports_no_component_module():
    code = "import sys; from aist_core.registry import discover; discover(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_duplicate_names_are_reported_with_both_plugins(capsys):
    registry = discover(extra_plugins=[("third-party-dup", DuplicateEdge())])
    assert registry.duplicates == [{"kind": "annotation_loss", "name": "edge", "kept": "aist-edge-loss", "ignored": "third-party-dup"}]
    err = capsys.readouterr().err
    assert "aist-edge-loss" in err and "third-party-dup" in err


def test_a_failing_hook_is_one_warning_and_others_still_work(capsys):
    with pytest.warns(UserWarning, match="broken-dist"):
        registry = discover(extra_plugins=[("broken-dist", Exploding())])
    assert registry.failures == [{"distribution": "broken-dist", "error": "RuntimeError: boom in hook"}]
    assert registry.get("annotation_loss", "edge")  # the others still work


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match="available: alpha, edge, resnet-feature"):
        discover().get("annotation_loss", "edgy")


@pytest.fixture
def broken_distribution(tmp_path):
    """An installed-looking distribution whose entry point cannot be imported."""
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[aist]\nbroken = no_such_module_anywhere\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def test_cli_reports_an_unimportable_plugin_in_one_line(broken_distribution):
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "plugins", "--json"], capture_output=True, text=True, env=broken_distribution)
    assert out.returncode == 0
    warning_lines = [l for l in out.stderr.splitlines() if "broken-plugin" in l and l.startswith("aist: warning")]
    assert len(warning_lines) == 1 and "ModuleNotFoundError" in warning_lines[0]
    listed = json.loads(out.stdout)
    assert any(row["distribution"] == "aist" for row in listed["plugins"])
    assert listed["failures"][0]["distribution"] == "broken-plugin"


def test_strict_mode_makes_plugin_failures_fatal(broken_distribution):
    env = dict(broken_distribution, AIST_STRICT_PLUGINS="1")
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "plugins"], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "broken-plugin" in out.stderr


def test_every_kind_has_an_implementation():
    registry = discover()
    missing = [kind for kind in KINDS if not registry.names(kind)]
    assert not missing, f"kinds without an implementation: {missing}"


def test_targets_that_are_not_components_are_refused():
    class Bad:
        @hookimpl
        def aist_register(self, registry):
            registry.add("metric", "not-a-metric", "json:JSONDecoder")

    registry = discover(extra_plugins=[("bad", Bad())])
    with pytest.raises(PluginError, match="not a Metric"):
        registry.load("metric", "not-a-metric")
