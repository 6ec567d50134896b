# The two commands of the README. Both install first (idempotent), so each works on a fresh machine.
.PHONY: install quickstart test bench

install:
	bash scripts/install.sh

quickstart: install
	.venv/bin/aist run recipes/quickstart.toml --out aist-runs/quickstart

test: install
	.venv/bin/python -m pytest -n 2 --dist loadfile -q

bench: install
	.venv/bin/python benchmarks/run_all.py
