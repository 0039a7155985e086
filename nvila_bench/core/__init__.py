"""Below the suites, in three parts by what they do (each its own import-linter contract):

    measuring    points, typed results and their one writer, timing, statistics, energy, environment capture,
                 the model cache of a run (session), the synthetic accuracy tasks
    analysis     the cost and memory models, the hardware and paper tables, what fits a machine, the
                 training-cost estimate: pure functions of configs and records
    comparison   the regression gate: two runs' records in, a verdict out

Imports only the model package (and measuring, for the other two)."""
