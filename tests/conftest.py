import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption(
        "--model-coverage",
        action="store_true",
        default=False,
        help="run the model-coverage suite (tests marked `coverage`, issue #16)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--model-coverage"):
        return
    skip = pytest.mark.skip(
        reason="model-coverage suite (issue #16): run with `pytest --model-coverage "
        "tests/system/test_model_coverage.py`"
    )
    for item in items:
        if item.get_closest_marker("coverage") is not None:
            item.add_marker(skip)
