"""Dataset distillation: DM and gradient matching around one pluggable real-data target."""

from paperlib.distill.engine import DISTILL_METHODS, DistillResult, Distiller, distill
from paperlib.distill.targets import TARGETS, make_target

__all__ = ["DISTILL_METHODS", "DistillResult", "Distiller", "distill", "TARGETS", "make_target"]
