"""Inference engines that turn early exits into saved wall-clock time."""
