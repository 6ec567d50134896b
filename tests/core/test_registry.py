"""Discovery through entry points: lazy, fault-isolated, duplicate-aware."""

import json
import os
import signal
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
    registry = discover(extra_plugins=[("broken-dist", Exploding())])
    assert registry.failures == [
        {"distribution": "broken-dist", "error": "plugin Exploding: aist_register raised RuntimeError: boom in hook"}
    ]
    assert registry.get("annotation_loss", "edge")  # the others still work
    discover(extra_plugins=[("broken-dist", Exploding())])  # discovery again: no second line
    lines = [line for line in capsys.readouterr().err.splitlines() if "broken-dist" in line]
    assert lines == ["aist: warning: plugin broken-dist: plugin Exploding: aist_register raised RuntimeError: boom in hook -- skipped"]


class Misregistering:
    @hookimpl
    def aist_register(self, registry):
        registry.add("annotation-loss", "hyphen", "pkg.mod:Loss")
        registry.add("metric", "no-colon", "pkg.mod.Metric")
        registry.add("metric", "fine", "pkg.mod:Metric")


def test_malformed_registrations_are_skipped_one_line_each(capsys):
    registry = discover(extra_plugins=[("misregistering", Misregistering())])
    errors = [f["error"] for f in registry.failures if f["distribution"] == "misregistering"]
    assert len(errors) == 2, errors
    assert "unknown kind 'annotation-loss'; did you mean 'annotation_loss'?" in errors[0]
    assert "target 'pkg.mod.Metric' must be 'module:Class'" in errors[1]
    assert registry.get("metric", "fine").distribution == "misregistering"  # its good entry stays
    assert registry.get("annotation_loss", "edge")  # and everyone else's
    assert len([l for l in capsys.readouterr().err.splitlines() if "misregistering" in l]) == 2


class Misspelt:
    @hookimpl
    def aist_registr(self, registry):
        registry.add("metric", "never", "pkg.mod:Metric")


class Unmarked:
    def aist_register(self, registry):
        registry.add("metric", "never", "pkg.mod:Metric")


class Empty:
    @hookimpl
    def aist_register(self, registry):
        pass


@pytest.mark.parametrize(
    "plugin,expected",
    [
        (Misspelt(), "aist_registr match no AIST hook; the hook is named aist_register"),
        (Unmarked(), "aist_register is not marked @hookimpl"),
        (Empty(), "aist_register ran but added no components"),
    ],
    ids=["misspelt-hook", "no-hookimpl", "adds-nothing"],
)
def test_a_plugin_that_registers_nothing_is_reported(plugin, expected):
    registry = discover(extra_plugins=[("silent-dist", plugin)])
    assert [f["distribution"] for f in registry.failures] == ["silent-dist"]
    assert expected in registry.failures[0]["error"]


def test_strict_mode_makes_a_malformed_registration_fatal(monkeypatch):
    monkeypatch.setenv("AIST_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="misregistering.*unknown kind 'annotation-loss'"):
        discover(extra_plugins=[("misregistering", Misregistering())])


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match="did you mean 'edge'\\? available: alpha, edge, resnet-feature"):
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


# ---------------------------------------------------------------------------- installed-like plugins
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BROKEN_MODULES = {
    "unknown-kind": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
                     '    registry.add("annotation-loss", "mine", "fake_plugin.loss:Mine")\n',
                     "unknown kind 'annotation-loss'"),
    "bad-target": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
                   '    registry.add("annotation_loss", "mine", "fake_plugin.loss.Mine")\n',
                   "must be 'module:Class'"),
    "raising-hook": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
                     '    raise KeyError("index 3 is out of bounds")\n',
                     "aist_register raised KeyError"),
    "misspelt-hook": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_registr(registry):\n'
                      '    registry.add("annotation_loss", "mine", "fake_plugin.loss:Mine")\n',
                      "aist_registr match no AIST hook"),
    "no-hookimpl": ('def aist_register(registry):\n    registry.add("annotation_loss", "mine", "fake_plugin.loss:Mine")\n',
                    "aist_register is not marked @hookimpl"),
    # SystemExit used to end every command with status 1, KeyboardInterrupt with 130 and no word
    "exiting-hook": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
                     '    raise SystemExit("hook exits")\n',
                     "aist_register raised SystemExit: hook exits"),
    "exiting-import": ("import sys\nsys.exit(3)\n", "entry point fake = 'fake_plugin': SystemExit: 3"),
    "interrupting-import": ("raise KeyboardInterrupt\n", "entry point fake = 'fake_plugin': KeyboardInterrupt"),
    "interrupting-hook": ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
                          '    raise KeyboardInterrupt("not a Ctrl-C")\n',
                          "aist_register raised KeyboardInterrupt: not a Ctrl-C"),
}


def installed_plugin(root, source: str, dist: str = "fake-plugin") -> dict:
    """Install-like a distribution under `root`: a `<name>.dist-info` with METADATA and an
    `aist` entry point, next to its module; returns an environment that puts it on sys.path."""
    info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[aist]\nfake = fake_plugin\n")
    (root / "fake_plugin.py").write_text(source)
    return dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def aist(env, *args, sigint=signal.SIG_DFL):
    """Run the CLI with SIGINT as a terminal gives it (SIG_DFL), whatever this test process
    inherited: a suite started with `nohup` or in a background job has it ignored."""
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def warnings_about(stderr: str, dist: str = "fake-plugin") -> list[str]:
    return [line for line in stderr.splitlines() if dist in line]


@pytest.mark.parametrize("case", sorted(BROKEN_MODULES))
def test_an_installed_broken_plugin_is_one_warning_in_aist_plugins(case, tmp_path):
    source, expected = BROKEN_MODULES[case]
    out = aist(installed_plugin(tmp_path, source), "plugins", "--json")
    assert out.returncode == 0, out.stderr
    lines = warnings_about(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("aist: warning: plugin fake-plugin:") and expected in lines[0], out.stderr
    listed = json.loads(out.stdout)
    assert [f["distribution"] for f in listed["failures"]] == ["fake-plugin"] and expected in listed["failures"][0]["error"]
    assert any(row["distribution"] == "aist" for row in listed["plugins"])


@pytest.mark.parametrize("case", ["interrupting-import", "interrupting-hook"])
def test_a_plugins_own_keyboard_interrupt_is_its_failure_also_where_sigint_is_ignored(case, tmp_path):
    # under nohup no Ctrl-C can arrive, so a KeyboardInterrupt can only be the plugin's own
    source, expected = BROKEN_MODULES[case]
    out = aist(installed_plugin(tmp_path, source), "plugins", "--json", sigint=signal.SIG_IGN)
    assert out.returncode == 0, out.stderr
    lines = warnings_about(out.stderr)
    assert len(lines) == 1 and expected in lines[0], out.stderr


def test_an_installed_broken_plugin_breaks_no_command(tmp_path):
    env = installed_plugin(tmp_path, BROKEN_MODULES["unknown-kind"][0])
    checked = aist(env, "check", os.path.join(REPO, "recipes", "smoke.toml"))
    assert checked.returncode == 0, checked.stderr
    assert "ok" in checked.stdout
    assert len(warnings_about(checked.stderr)) == 1 and "Traceback" not in checked.stderr, checked.stderr
    table = aist(env, "plugins")
    assert table.returncode == 0
    broken = [line for line in table.stdout.splitlines() if line.startswith("broken fake-plugin:")]
    assert len(broken) == 1 and "unknown kind 'annotation-loss'" in broken[0], table.stdout
    assert len(warnings_about(table.stderr)) == 1


def test_strict_mode_makes_an_installed_broken_plugin_fatal_in_one_line(tmp_path):
    env = dict(installed_plugin(tmp_path, BROKEN_MODULES["unknown-kind"][0]), AIST_STRICT_PLUGINS="1")
    out = aist(env, "plugins")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("aist plugins: plugin fake-plugin is broken (AIST_STRICT_PLUGINS=1)"), lines
    out = aist(env, "check", "recipes/smoke.toml")  # every other command: the same one line, no traceback
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("aist: plugin fake-plugin is broken"), out.stderr


def test_names_that_could_spoof_output_or_name_a_path_are_refused(tmp_path):
    source = ('from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
              '    registry.add("annotation_loss", "alpha\\nbase.toml: ok (fake)", "fake_plugin:X")\n'
              '    registry.add("annotation_loss", "../../x", "fake_plugin:X")\n'
              '    registry.add("annotation_loss", "a/b", "fake_plugin:X")\n'
              '    registry.add("annotation_loss", "a..b", "fake_plugin:X")\n'
              '    registry.add("annotation_loss", "Fine", "fake_plugin:X")\n'
              '    registry.add("annotation_loss", "fine-2.0_b", "fake_plugin:X")\n')
    out = aist(installed_plugin(tmp_path, source), "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rule = ("is not a plain name (lower-case letters, digits, '_', '.', '-'; starting with a letter or digit; no '..'; "
            "at most 64 characters) -- skipped")
    assert warnings_about(out.stderr) == [
        f"aist: warning: plugin fake-plugin: registry.add: annotation_loss name {name!r} {rule}"
        for name in ("alpha\nbase.toml: ok (fake)", "../../x", "a/b", "a..b", "Fine")]
    listed = json.loads(out.stdout)
    (mine,) = [row for row in listed["plugins"] if row["distribution"] == "fake-plugin"]
    assert mine["components"] == {"annotation_loss": ["fine-2.0_b"]}
    assert not [line for line in out.stdout.splitlines() + out.stderr.splitlines() if line.startswith("base.toml")]
    table = aist(installed_plugin(tmp_path / "again", source), "plugins")
    assert table.returncode == 0 and not [line for line in table.stdout.splitlines() if line.startswith("base.toml")]


def test_what_a_plugin_prints_goes_to_stderr_not_into_json(tmp_path):
    source = ('import os, sys\nprint("GARBAGE AT IMPORT")\nos.write(1, b"RAW GARBAGE AT IMPORT\\n")\n'
              'from aist_core.hookspecs import hookimpl\n\n@hookimpl\ndef aist_register(registry):\n'
              '    print("GARBAGE IN HOOK")\n    sys.__stdout__.write("BUFFERED GARBAGE\\n")\n'
              '    registry.add("annotation_loss", "mine", "fake_plugin:X")\n')
    out = aist(installed_plugin(tmp_path, source), "plugins", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)  # nothing but the JSON document
    assert any(row["distribution"] == "fake-plugin" for row in listed["plugins"]) and listed["failures"] == []
    for garbage in ("GARBAGE AT IMPORT", "RAW GARBAGE AT IMPORT", "GARBAGE IN HOOK", "BUFFERED GARBAGE"):
        assert garbage in out.stderr


def test_a_real_ctrl_c_during_plugin_import_still_stops_the_command(tmp_path):
    # a SIGINT that arrives while a plugin is imported is the user's, not the plugin's failure
    source = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n"
    out = aist(installed_plugin(tmp_path, source), "plugins", "--json")
    assert out.returncode in (1, 130) and out.stdout == ""  # typer: 130; aist's own handler: 1 with "interrupted"
    assert not warnings_about(out.stderr) and "Traceback" not in out.stderr, out.stderr


class DuplicateOnly:
    @hookimpl
    def aist_register(self, registry):
        registry.add("segmenter", "grabcut", "somewhere_else:GrabCut")


def test_a_plugin_whose_only_name_is_taken_gets_one_warning_line(capsys):
    # it also got "aist_register ran but added no components", which was not what happened
    registry = discover(extra_plugins=[("dup-only-dist", DuplicateOnly())])
    assert registry.failures == [] and [d["ignored"] for d in registry.duplicates] == ["dup-only-dist"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "dup-only-dist" in line]
    assert lines == [f"aist: segmenter 'grabcut' is registered by both {registry.get('segmenter', 'grabcut').distribution} "
                     "and dup-only-dist; using " + registry.get("segmenter", "grabcut").distribution]
