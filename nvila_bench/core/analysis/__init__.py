"""Analysis: the cost and memory models, the hardware and paper tables, what fits a machine, the training-cost
estimate. Pure functions of configs and records; imports measuring's types, never comparison."""
