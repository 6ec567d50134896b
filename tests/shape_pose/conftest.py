import pytest

from aist_plugins.shape_pose.toy_data import write_toy_dataset


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """Real files: 8 train / 2 val / 2 test solids, 4 views each, 64 px RGBA, GT clouds."""
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "views", {"train": 8, "val": 2, "test": 2}, views=4, seed=1)
