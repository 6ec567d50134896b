"""Suite-wide ordering: files holding `slow` tests are collected first.

`make test` runs two workers with `--dist loadfile`, which hands out files in collection order.
The longest file (tests/segmentation/test_seg_done_when.py, several minutes of shape-prior
training) used to come near the end in alphabetical order and ran alone while the other worker
sat idle; started first, it overlaps the rest of the suite.
"""


def pytest_collection_modifyitems(items):
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order within each group kept
