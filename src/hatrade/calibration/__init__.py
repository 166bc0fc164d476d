"""Calibration by "gravity as a guide" (the 46 trade-cost and TFP parameters and beta), the
outer loop on micro targets, and robustness grids."""
