"""The package's layering (README, "How the code is laid out"): a module imports only from its
own package or from lower layers, anywhere in its code (inside functions and ``TYPE_CHECKING``
blocks too), so the folders tell a reader what depends on what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "mpi_pymc"
# Lower numbers are lower layers. Packages of one layer do not import each other.
LAYERS = {
    "core": 0,
    "model": 1,
    "sampling": 2,
    "diagnostics": 2,
    "output": 2,
    "postprocessing": 3,
    "driver": 4,
    # The front doors and tools, each above what it uses.
    "options": 5,
    "launch": 5,
    "report": 5,
    "bench": 5,
    "jobscript": 6,
    "api": 7,
    "submit": 8,
    "cli": 9,
    "__init__": 9,
    "__main__": 10,
}


def _unit(path: Path) -> str:
    """The layer unit of a module: its sub-package, or the top-level module's own name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_units(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mpi_pymc":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("mpi_pymc."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mpi_pymc."):
                    found.add(alias.name.split(".")[1])
    return found - {"__version__"}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    assert {_unit(path) for path in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: Path):
    unit = _unit(path)
    wrong = [
        other
        for other in _imported_units(ast.parse(path.read_text()))
        if other != unit and LAYERS[other] >= LAYERS[unit]
    ]
    assert not wrong, f"{path.relative_to(ROOT)} (layer {LAYERS[unit]}) imports {wrong}"


def test_no_sub_package_shadows_a_public_name():
    """Importing a sub-package sets it as an attribute of ``mpi_pymc``: one named like a public
    function (``postprocess``) would replace that function for every user after the first run."""
    import importlib

    import mpi_pymc

    public = {name: getattr(mpi_pymc, name) for name in mpi_pymc.__all__}
    for path in MODULES:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] in ("__main__",):
            continue
        name = ".".join(("mpi_pymc", *parts)).removesuffix(".__init__")
        importlib.import_module(name)
    for name, value in public.items():
        assert getattr(mpi_pymc, name) is value, name
