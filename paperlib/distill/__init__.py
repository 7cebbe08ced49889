"""Dataset distillation: DM and gradient matching around one pluggable real-data target."""

from paperlib.distill.engine import DISTILL_METHODS, Distiller, DistillResult, distill
from paperlib.distill.targets import TARGETS, make_target

__all__ = ["DISTILL_METHODS", "TARGETS", "DistillResult", "Distiller", "distill", "make_target"]
