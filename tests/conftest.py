"""Suite-wide ordering: the longest file first, then the other files holding `slow` tests.

`make test` runs two workers with `--dist loadfile --no-loadscope-reorder`, which hands out
files in collection order (xdist's default reorder would put the files with the most tests
first instead). tests/segmentation/test_seg_done_when.py trains the shape prior for several
minutes; in alphabetical order it came last and ran alone while the other worker sat idle, so
it starts first and overlaps the rest of the suite.
"""

import sys

import pytest

LONGEST = "test_seg_done_when.py"


def pytest_collection_modifyitems(items):
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    # stable sort: the order within each group is kept
    items.sort(key=lambda item: (item.path.name != LONGEST, item.path not in slow_files))


@pytest.fixture(autouse=True)
def _torch_threads_kept():
    """A test that changes torch's thread count gets it restored: the suite runs one thread per
    worker (two workers on two cores), and a leaked count once changed the last bits of a later
    test's results in the same worker."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)
