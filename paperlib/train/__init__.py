"""Training networks: models, DSA, metrics, the training loop, evaluation trainers, the SupCon encoder."""
