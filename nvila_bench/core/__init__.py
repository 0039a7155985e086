"""Below the suites: points, typed results and their one writer, timing, statistics, energy, environment
capture, the cost and memory models and the hardware table. Imports only the model package."""
