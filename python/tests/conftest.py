"""Fixtures shared by the Python package's tests: the bundled policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sqlsandbox

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"


@pytest.fixture(scope="session")
def saas() -> sqlsandbox.Policy:
    return sqlsandbox.Policy.from_file(POLICIES / "saas.yaml")


@pytest.fixture(scope="session")
def marketplace() -> sqlsandbox.Policy:
    return sqlsandbox.Policy.from_file(POLICIES / "marketplace.yaml")


def mark_done(name: str, summary: str) -> None:
    """Writes the marker `.ci/run` checks for a server test that ran to its
    end (as `tests/common/mod.rs` does for the Rust server tests)."""
    print(f"{name}: {summary}")
    markers = os.environ.get("SQLSANDBOX_DIFF_MARKERS")
    if markers:
        Path(markers, name).write_text(summary + "\n")
