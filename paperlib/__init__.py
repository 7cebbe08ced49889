"""paperlib: the library behind the bias-in-dataset-distillation companion.

Layers, each importing only the ones before it (``tests/test_architecture.py`` enforces it):

* :mod:`paperlib.core` — parameters and the one cache key, registries, errors, seeds, files, device;
* :mod:`paperlib.data` — raw sources, the registry of biased dataset presets, the dataset container;
* :mod:`paperlib.train` — models, DSA, metrics, the training loop and the evaluation trainers;
* :mod:`paperlib.distill` — methods, targets (vanilla / KDE-weighted / FairDD groups / COBRA barycenter), the engine;
* :mod:`paperlib.experiments` — one run (:func:`paperlib.experiments.runner.run`), suites, profiles, benchmarks;
* :mod:`paperlib.report` — tables, figures, the explorer, the notebook checks;
* the entry points: :mod:`paperlib.cli`, :mod:`paperlib.reproduce`, :mod:`paperlib.pairing`, :mod:`paperlib.notebook`.

Importing the package loads every registry, so every registered name validates wherever parameters are made;
then it imports the modules named in ``$PAPERLIB_PLUGINS`` (comma-separated, e.g. ``my_presets,my_targets``), so
entries registered outside the package reach the command line, ``make reproduce`` and job processes too.
"""

import importlib
import os
import sys

from paperlib.core.errors import PaperlibError
from paperlib.data import presets as _presets  # noqa: F401  (registers the dataset presets)
from paperlib.distill import engine as _engine  # noqa: F401  (registers methods, inits, samplings, targets, KDE)
from paperlib.train import trainers as _trainers  # noqa: F401  (registers models, DSA ops, trainers)

__all__ = ["PaperlibError"]
__version__ = "0.1.0"


def _import_plugins(names: str) -> None:
    """Import each module of the comma-separated ``names`` (their registrations run on import)."""
    for name in filter(None, (part.strip() for part in names.split(","))):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the plugin itself failed to import something: its own traceback says what
                raise
            raise PaperlibError(f"PAPERLIB_PLUGINS names {name!r}, which is not an importable module; put its "
                                "folder on PYTHONPATH (an absolute path) or fix the name") from None
        except PaperlibError as err:  # e.g. a name registered twice
            raise PaperlibError(f"the plugin {name!r} (PAPERLIB_PLUGINS): {err}") from None


def _started_as_a_paperlib_command() -> bool:
    """Whether this process is ``python -m paperlib...`` (the CLI, reproduce, the checks)."""
    argv = sys.orig_argv
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1].split(".")[0] == "paperlib"


try:
    _import_plugins(os.environ.get("PAPERLIB_PLUGINS", ""))
except PaperlibError as error:
    if not _started_as_a_paperlib_command():
        raise
    # a command's main() reports errors as one line, but this one comes before main() runs
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
