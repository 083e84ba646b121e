"""The model layer: weights, architecture parts, the capture forward, generation, loading."""
