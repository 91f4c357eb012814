# Set-up, tests and benchmarks. `make setup && make test` on a fresh machine.
PY ?= python3

.PHONY: setup test bench
setup:
	$(PY) -m pip install -r requirements-dev.txt

test:
	$(PY) -m pytest -q tests

bench:
	$(PY) bench/encoder.py
