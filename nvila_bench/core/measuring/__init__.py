"""Measuring: points, typed results and their one writer, timing, statistics, energy, environment capture,
the run's model cache (session) and the synthetic accuracy tasks. Imports neither analysis nor comparison."""
