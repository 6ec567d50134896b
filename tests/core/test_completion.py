"""Shell completion (Typer's): the script installs, and the completer answers with AIST's words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AIST = str(Path(sys.executable).with_name("aist"))


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_AIST_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    out = subprocess.run([AIST], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_show_completion_prints_a_bash_script():
    # Typer detects the user's shell from the parent process (sh under make); its test switch
    # makes the option take the shell's name instead
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    out = subprocess.run([AIST, "--show-completion", "bash"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "_aist_completion" in out.stdout and "complete " in out.stdout


def test_commands_complete():
    assert _complete("aist ru", 1) == ["run"]
    assert set(_complete("aist ", 1)) >= {"run", "check", "plugins", "show", "report"}


def test_show_completes_kinds_and_registered_names():
    assert "translator" in _complete("aist show tr", 2)
    assert "cyclegan" in _complete("aist show translator cy", 3)
