# `make demo` runs the main job on the embedded digits data; `make test` runs the test suite; `make docs` builds the
# documentation site (mkdocs build --strict, into build/site/); `make bench` runs every benchmark at small scale (under
# an hour on 2 CPU cores; SCALE=full for a GPU machine) and rebuilds the site, whose benchmark pages are generated
# from the results.
# Each creates .venv and installs archkd into it first. torch is pinned to the CPU build available here unless a torch
# is already importable in the venv (set TORCH_SPEC to choose another build, e.g. a CUDA wheel on a GPU machine).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
SCALE ?= small

.PHONY: venv demo test docs bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/archkd demo

test: venv
	$(PY) -m pytest

docs: venv
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: venv
	$(PY) bench/run.py --scale $(SCALE) --docs

clean:
	rm -rf $(VENV) runs .pytest_cache build/site
