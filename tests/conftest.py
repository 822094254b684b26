"""Shared fixtures: real data from ../shared/data, read in place (never copied into the repo)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
DEMO_CASE = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def data_path(*parts: str) -> Path:
    """Path under shared/data; fails loudly if the data set is missing."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"real data missing: {p} (shared/data must sit beside the repo)")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_path()


@pytest.fixture(scope="session")
def demo_case_path() -> Path:
    if not DEMO_CASE.is_file():
        pytest.fail(f"demo case missing: {DEMO_CASE} (make setup installs invesalius-examples)")
    return DEMO_CASE
