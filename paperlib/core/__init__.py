"""The lowest layer: parameters and the one cache key, registries, errors, files, device and seeds."""
