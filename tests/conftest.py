import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "agg")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder and never touches the network."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")


@pytest.fixture(scope="session")
def mnist():
    """The embedded MNIST subset: (train, test) ImageData, loaded once."""
    from vaelab.data import load_embedded_mnist

    return load_embedded_mnist(True), load_embedded_mnist(False)


@pytest.fixture
def small(mnist):
    """512 training and 256 test images (all digits)."""
    train, test = mnist
    return train.images[:512], test.images[:256]


@pytest.fixture
def seeded():
    torch.manual_seed(0)
