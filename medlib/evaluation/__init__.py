"""Evaluation (notebooks 40 and 50): batched inference, predictions, answer parsing and the metrics."""
