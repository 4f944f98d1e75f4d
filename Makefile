# Every target creates and fills .venv when needed, so a fresh clone needs only `make demo`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is pinned so pip takes the CPU build already on disk instead of a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test bench lint typecheck clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[transformers,gpu,k8s,lightning,dev]' $(TORCH)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hf-eco2ai demo --output-dir demo-output

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]' $(TORCH)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
