"""What the package tells its users: the version on the command line, and that it is typed (PEP 561)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from collection_operator import cli

REPO = Path(__file__).resolve().parents[2]


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version("qdrant-collection-operator") == expected
    assert capsys.readouterr().out == f"qdrant-collection-operator {expected}\n"


def test_the_wheel_carries_py_typed(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=240,
    )
    wheel = next(tmp_path.glob("qdrant_collection_operator-*.whl"))
    assert "collection_operator/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_every_benchmark_module_imports():
    """`make bench` runs them all in one go, hours in: a broken import must fail here, not there."""
    import importlib
    import pkgutil

    import bench

    for module in pkgutil.iter_modules(bench.__path__):
        importlib.import_module(f"bench.{module.name}")


def test_httpcore_finds_sniffio_without_a_failed_import_per_request():
    """httpcore imports sniffio on every lock, event and cancel shield of a request; without it installed each
    one is a failed import searching sys.path (~0.1 ms of CPU, 4 per Qdrant call). It is a runtime dependency."""
    from httpcore._synchronization import current_async_library

    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(r.startswith("sniffio") for r in requirements)
    assert asyncio.run(_library(current_async_library)) == "asyncio"
    assert "sniffio" in sys.modules, "httpcore fell back to 'asyncio' after a failed import of sniffio"


async def _library(detect: Callable[[], str]) -> str:
    return detect()
