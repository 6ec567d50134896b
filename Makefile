# The two commands of the README. Both install first (idempotent), so each works on a fresh machine.
# Tests run in two processes of one torch thread each: two threads per process on two cores
# oversubscribe the machine and make small convolutions many times slower.
.PHONY: install quickstart test bench

install:
	bash scripts/install.sh

quickstart: install
	.venv/bin/aist run recipes/quickstart.toml --out aist-runs/quickstart

test: install
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q

bench: install
	.venv/bin/python benchmarks/run_all.py
