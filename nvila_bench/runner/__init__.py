"""The running layer: sweeps over points, process isolation, data-parallel training under torchrun."""
