"""paperlib: the library behind the bias-in-dataset-distillation companion.

Every computation the notebooks show lives here: biased datasets
(:mod:`paperlib.data`), the ConvNet (:mod:`paperlib.models`), differentiable
siamese augmentation (:mod:`paperlib.augment`), the evaluation protocol and
fairness metrics (:mod:`paperlib.evaluate`, :mod:`paperlib.metrics`) and the
experiment runner (:mod:`paperlib.runner`).
"""

from paperlib.errors import PaperlibError

__all__ = ["PaperlibError"]
__version__ = "0.1.0"
