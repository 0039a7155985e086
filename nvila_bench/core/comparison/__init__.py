"""Comparison: the regression gate, two runs' records in, a verdict out. Imports measuring, never analysis."""
