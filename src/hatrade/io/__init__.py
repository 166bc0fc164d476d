"""Persistence and input files: atomic writes, output folders, result folders, the results
cache, TOML configurations and batch files."""
