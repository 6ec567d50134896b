"""Shared fixtures: two tiny real views datasets (rendered RGBA PNGs) for domain A and B.

Torch runs on one thread here: the test machine's 2 cores are shared, and with 2 OpenMP
threads on a busy machine small convolutions become ~100x slower (measured).
"""

import pytest
import torch

from aist_core.testing.fixtures import make_views_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    a = make_views_dataset(root / "a", n_objects=6, views=2, size=32, seed=0)
    b = make_views_dataset(root / "b", n_objects=6, views=2, size=32, seed=1, domain="crops", tint=(0.9, 0.3, 0.2))
    return a, b
