"""Pair metrics, threshold calibration and the retrieval benchmark."""
