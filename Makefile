# Set-up, tests and benchmarks. `make setup && make test` on a fresh machine.
PY ?= python3

.PHONY: setup test bench book notebooks
setup:
	$(PY) -m pip install -r requirements-dev.txt

test:
	$(PY) -m pytest -q tests

bench:
	$(PY) bench/encoder.py

book:
	for chapter in docs/book/[0-9][0-9]_*.py; do echo "== $$chapter"; MPLBACKEND=Agg $(PY) $$chapter || exit 1; done

notebooks:
	$(PY) scripts/book_notebooks.py
