"""Distillation: methods, targets, sample weights, the engine shared by DM and gradient matching."""
