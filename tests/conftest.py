"""Test-session settings: one torch thread per process (the suite runs under pytest-xdist on
2 cores; OpenMP threads oversubscribing the cores make torch an order of magnitude slower)."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
