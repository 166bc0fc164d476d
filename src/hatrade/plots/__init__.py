"""Figures (matplotlib): trade fit, elasticities, welfare, efficient allocation."""
