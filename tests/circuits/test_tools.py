import pytest

from fames.circuits import tools


def test_missing_tool_names_package_and_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("FAMES_STA", raising=False)
    with pytest.raises(RuntimeError, match=r"opensta.*apt-get install yosys opensta"):
        tools.find_tool("sta")


def test_synth_without_yosys_is_one_clear_error(monkeypatch):
    from fames.circuits.synth import synthesize

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("FAMES_YOSYS", raising=False)
    with pytest.raises(RuntimeError, match="yosys"):
        synthesize("module m(input a, output y); assign y = a; endmodule", "m")


def test_missing_liberty(monkeypatch, tmp_path):
    monkeypatch.setenv("FAMES_LIBERTY", str(tmp_path / "none.lib"))
    with pytest.raises(FileNotFoundError, match="FAMES_LIBERTY"):
        tools.find_liberty()
    monkeypatch.delenv("FAMES_LIBERTY")
    monkeypatch.setattr(tools, "liberty_candidates", lambda: [tmp_path / "x.lib"])
    with pytest.raises(FileNotFoundError, match="qflow-tech-osu018.*make deps"):
        tools.find_liberty()


def test_liberty_env_override(monkeypatch, tmp_path):
    lib = tmp_path / "my.lib"
    lib.write_text("library(x) {}")
    monkeypatch.setenv("FAMES_LIBERTY", str(lib))
    assert tools.find_liberty() == lib


def test_run_tool_timeout():
    with pytest.raises(RuntimeError, match="timed out"):
        tools.run_tool(["sleep", "5"], timeout=0.2)
