"""`eda` marker: tests that run yosys/OpenSTA; skipped when the tools or the liberty are missing."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "eda: yosys/OpenSTA (skipped when they or the liberty is missing)")


def eda_missing() -> str | None:
    from fames.circuits.tools import find_liberty, find_tool

    try:
        for tool in ("yosys", "yosys-abc", "sta"):
            find_tool(tool)
        find_liberty()
    except (RuntimeError, FileNotFoundError) as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "eda" in item.keywords:
            if not checked:
                reason, checked = eda_missing(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Characterisation cache in a per-session temp dir, so tests never touch ~/.cache/fames/char."""
    monkeypatch.setenv("FAMES_CACHE", str(tmp_path_factory.getbasetemp() / "fames-cache"))
