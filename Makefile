# make setup                  create .venv with the exact versions of requirements.lock and paperlib (editable)
# make test                   unit tests, then the notebook checks (papermill smoke run + nbval)
# make unit-test              the unit tests alone, on the CPU (a GPU is hidden: their references are the CPU's)
# make gpu-test               the GPU's first check: DM, DC, the trainers and KDE on CUDA against the CPU
# make notebook-test          the notebook checks alone (papermill smoke run + nbval, in .nbcheck/)
# make notebook-test-portable [OTHER_CPU=avx2|pre-avx]  the notebook checks as another CPU runs them (CI runs it)
# make reproduce [PROFILE=quick]  run every notebook with params/$(PROFILE)/ (smoke | quick | paper), recomputing
#                             (or from your cache), then rewrite the results store results/$(PROFILE)/
#   [EXECUTOR=local JOBS=N | EXECUTOR=slurm]  compute the notebooks' runs as jobs first (submitit)
#   [FROM_STORE=1]            take runs from results/ too: compute only what neither it nor the cache holds
# make plan [PROFILE=quick] [FROM_STORE=1]  compute no run: list the runs reproduce needs, stored or missing,
#                             and the distillation iterations and evaluation epochs still to compute
# make lab [LAB_ARGS=...]     JupyterLab on the notebooks with this environment's kernel (as root: LAB_ARGS=--allow-root)
# make sync                   pair notebooks/NN_*.py (the reviewed source) with their .ipynb and push its inputs there
# make browser-test [SCREENSHOTS=DIR]  notebook 06's explorer driven in headless Chromium through JupyterLab
# make clean-cache            delete cache/, the default run cache ($PAPERLIB_CACHE elsewhere and results/ stay)
# make help                   print this list
PYTHON  ?= python3
PROFILE ?= quick
EXECUTOR ?= serial
JOBS    ?=
FROM_STORE ?=
VENV    := .venv
BIN     := $(VENV)/bin
CHECK   := .nbcheck
SCREENSHOTS ?= $(CHECK)/browser/screenshots

# The checks write nothing into cache/, figures/, results/ or tracked files: no bytecode (for every command
# below), the results store off, and the notebooks' cache, figures and executed copies in the git-ignored
# $(CHECK)/ at the repository root, removed after a pass (kept after a failure, to look at).
export PYTHONDONTWRITEBYTECODE = 1
# The references of the checks were computed on CPUs, and their tolerance measured across CPUs: a GPU is hidden
# (device=auto would take it, and its sums, batching and TF32 were never measured against them).
CHECK_ENV = PAPERLIB_CACHE="$(CURDIR)/$(CHECK)/cache" PAPERLIB_FIGURES="$(CURDIR)/$(CHECK)/figures" PAPERLIB_RESULTS=off \
            CUDA_VISIBLE_DEVICES=
NBVAL     = -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/smoke
# Another machine, emulated: ATen, oneDNN and MKL restricted to the vector kernels of the CPU a generation below
# this one, so every sum is rounded in another order: AVX2 on an AVX-512 machine (the commonest other x86 CPU),
# pre-AVX kernels elsewhere (on an ARM CPU they change little); OTHER_CPU=avx2 or OTHER_CPU=pre-avx picks one. (Another thread count is checked by
# tests/test_reproducibility.py, pre-AVX kernels there too.) Its own inductor cache as well: torch.compile's
# on-disk cache, shared with this machine's kernels, was measured to hand an emulated AVX2 process compiled code
# that trained to NaN (and a native one, after it, a heap corruption).
OTHER_CPU ?=
AVX2_ENV    = ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
PRE_AVX_ENV = ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2

.PHONY: help setup test unit-test gpu-test notebook-test notebook-test-portable browser-test reproduce plan lab sync clean-cache

setup: $(VENV)/.installed

# torch==2.13.0 is pinned in the lock: pip takes a local wheel where PIP_FIND_LINKS offers one (the development
# machines: a CPU build), else PyPI's build for the platform (on Linux the CUDA one, with its GBs of CUDA
# libraries). For the CPU build on Linux: make setup PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# (2.13.0+cpu satisfies the pin).
PIP_ARGS ?=
$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11, 5) else \
	    "error: $(PYTHON) is Python %d.%d.%d; the lock needs 3.11.5 or newer: make setup PYTHON=python3.12" % sys.version_info[:3])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIP_ARGS) -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

test: unit-test notebook-test

# The unit tests' expectations were measured on CPUs, and device=auto would take a GPU: it is hidden, as for the
# notebook checks. gpu-test runs the tests marked gpu with it visible.
unit-test: setup
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest

gpu-test: setup
	@$(BIN)/python -c 'import os, sys, torch; sys.exit(0 if torch.cuda.is_available() or os.environ.get("PAPERLIB_TEST_DEVICE") \
	    else "error: make gpu-test needs CUDA and torch sees none; PAPERLIB_TEST_DEVICE=cpu runs it CPU against CPU")'
	$(BIN)/python -m pytest -m gpu

# Every notebook runs from scratch under papermill with the smoke profile (hermetic digits data, an empty
# cache) and its verdict tables must all hold (from the current experiment files); then nbval re-executes
# the committed smoke notebooks on the runs just computed and compares their checked cells: exact tables
# (counts, groups, the theorem) and the verdict tables of paperlib.report.checks.
notebook-test: setup
	rm -rf $(CHECK) && mkdir -p $(CHECK)
	$(CHECK_ENV) $(BIN)/python -m paperlib.reproduce --profile smoke --output-dir $(CHECK)/executed
	$(BIN)/python -m paperlib.report.checks verify $(CHECK)/executed
	$(CHECK_ENV) $(BIN)/python $(NBVAL)
	rm -rf $(CHECK)

# The same checks on the emulated other machine, from an empty cache: every run is recomputed there. (The
# computing is papermill's: nbval waits only 5 s for a cell's output after it ends, too little after a long
# cell on a busy machine, so its cells only load stored runs.)
notebook-test-portable: setup
	@other='$(OTHER_CPU)'; \
	if [ -z "$$other" ]; then \
	    other=$$($(BIN)/python -c 'import torch; print("avx2" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "pre-avx")') \
	        || { echo "error: $(BIN)/python cannot import torch to pick the CPU to emulate; set OTHER_CPU=avx2 or pre-avx" >&2; exit 2; }; \
	fi; \
	case "$$other" in avx2) kernels='$(AVX2_ENV)';; pre-avx) kernels='$(PRE_AVX_ENV)';; \
	    *) echo "error: OTHER_CPU=$$other is neither avx2 nor pre-avx (or empty: chosen from this CPU)" >&2; exit 2;; esac; \
	echo "the notebook checks as another CPU runs them ($$other kernels): $$kernels"; \
	env $$kernels TORCHINDUCTOR_CACHE_DIR="$(CURDIR)/$(CHECK)/inductor" $(MAKE) notebook-test

# The bias explorer in a real browser (tests/browser/explorer_browser.py): JupyterLab on a copy of the smoke
# notebook 06 in $(CHECK)/browser (its cache and figures there too), headless Chromium through selenium: every
# control, a live run, no console error, no broken image. Needs chromium and chromedriver
# (tests/browser/install_chromium.sh). After a pass only the screenshots are kept, in $(SCREENSHOTS) (the
# default, or a folder outside $(CHECK)/browser); after a failure the whole work folder, to look at.
browser-test: setup
	rm -rf $(CHECK)/browser
	$(BIN)/python tests/browser/explorer_browser.py --screenshots "$(SCREENSHOTS)"
	@if [ "$(abspath $(SCREENSHOTS))" = "$(abspath $(CHECK)/browser/screenshots)" ]; then \
	    find $(CHECK)/browser -mindepth 1 -maxdepth 1 ! -name screenshots -exec rm -rf {} +; \
	else \
	    rm -rf $(CHECK)/browser; rmdir $(CHECK) 2>/dev/null || true; \
	fi

# FROM_STORE: a yes reads the results store, a no (or nothing) does not; another value stops with one line
YES := 1 yes true on YES TRUE ON Yes True On
NO  := 0 no false off NO FALSE OFF No False Off
FROM_STORE_FLAG = $(if $(filter $(YES),$(FROM_STORE)),--from-store,$(if $(filter-out $(NO),$(FROM_STORE)),\
    $(error FROM_STORE=$(FROM_STORE) is neither yes nor no: FROM_STORE=1 reads the results store, 0 or nothing does not)))

# PROFILE is quoted: an empty one reaches paperlib, whose error names the profiles
reproduce: setup
	$(BIN)/python -m paperlib.reproduce --profile "$(PROFILE)" --executor $(EXECUTOR) $(if $(JOBS),--jobs $(JOBS)) \
	    $(FROM_STORE_FLAG)

plan: setup
	$(BIN)/python -m paperlib.reproduce --profile "$(PROFILE)" --plan $(FROM_STORE_FLAG)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# The .py is the reviewed source: sync pushes the cells of each .py into its .ipynb where they differ (compared cell
# by cell, not by modification time), keeping the outputs of unchanged cells; a new .py is paired first, which
# creates its .ipynb. An updated .ipynb loses papermill's injected parameters cell, which is not in the .py: re-run
# `make reproduce` for outputs.
sync: setup
	$(BIN)/python -m paperlib.pairing

clean-cache:
	rm -rf cache

# The comment block at the top of this file, without its '# '.
help:
	@sed -n '/^[^#]/q; s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))
