# make setup                  create .venv with the exact versions of requirements.lock and paperlib (editable)
# make test                   unit tests, then the notebook checks (papermill smoke run + nbval)
# make reproduce [PROFILE=quick]  run every notebook with params/$(PROFILE)/ (smoke | quick | paper)
# make lab [LAB_ARGS=...]     JupyterLab on the notebooks with this environment's kernel (as root: LAB_ARGS=--allow-root)
# make sync                   pair notebooks/NN_*.py (the reviewed source) with their .ipynb and push its inputs there
PYTHON  ?= python3
PROFILE ?= quick
VENV    := .venv
BIN     := $(VENV)/bin
CHECK   := .nbcheck

.PHONY: setup test unit-test notebook-test reproduce lab sync clean-cache

setup: $(VENV)/.installed

# torch==2.13.0 is pinned in the lock: here pip takes the local CPU wheel, on a
# GPU machine the CUDA build of the same version.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

test: unit-test notebook-test

unit-test: setup
	$(BIN)/python -m pytest

# Every notebook runs from scratch under papermill with the smoke profile (hermetic digits data, its own
# cache), then nbval re-executes the committed smoke notebooks and compares their checked cells.
notebook-test: setup
	rm -rf $(CHECK) && mkdir -p $(CHECK)
	PAPERLIB_CACHE=$(CURDIR)/$(CHECK)/cache $(BIN)/python -m paperlib.reproduce --profile smoke --output-dir $(CHECK)/executed
	PAPERLIB_CACHE=$(CURDIR)/$(CHECK)/cache $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/smoke
	rm -rf $(CHECK)

reproduce: setup
	$(BIN)/python -m paperlib.reproduce --profile $(PROFILE)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# The .py is the reviewed source: sync pushes its inputs into the paired .ipynb and keeps the outputs of
# unchanged cells (a new .ipynb is created for a new .py). Re-run `make reproduce` for fresh outputs.
sync: setup
	$(BIN)/jupytext --set-formats ipynb,py:percent notebooks/[0-9][0-9]_*.py
	$(BIN)/jupytext --to ipynb --update notebooks/[0-9][0-9]_*.py

clean-cache:
	rm -rf cache
