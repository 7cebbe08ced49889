# make setup   create .venv with the exact versions of requirements.lock and paperlib (editable)
# make test    run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup test clean-cache

setup: $(VENV)/.installed

# torch==2.13.0 is pinned in the lock: here pip takes the local CPU wheel, on a
# GPU machine the CUDA build of the same version.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

test: setup
	$(BIN)/python -m pytest

clean-cache:
	rm -rf cache
