"""Test-session settings and shared fixtures.

One torch thread per process: the suite runs under pytest-xdist on 2 cores, and OpenMP
threads oversubscribing the cores make torch an order of magnitude slower.
"""

import matplotlib
import numpy as np
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler

from sk_hierclust._testing import make_planted

matplotlib.use("Agg")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def planted_raw():
    """The planted hierarchy of ``sk_hierclust._testing.make_planted``: 4 blobs in 2 groups."""
    return make_planted()


@pytest.fixture(scope="session")
def planted(planted_raw):
    """``planted_raw`` scaled to [0, 1] (float32), for the Bernoulli likelihood."""
    X, y = planted_raw
    return MinMaxScaler().fit_transform(X).astype(np.float32), y
