"""Hardware figures of a multiplier: synthesis, exhaustive verification, simulated activity, OpenSTA.

Power: Debian's OpenSTA 2.0.17 ignores per-pin activities (``set_power_activity -pins`` is broken and
its ``sta::set_power_pin_activity`` has no effect on internal nets), so the flow asks OpenSTA for each
instance's internal, switching and leakage power at activity 1 (one toggle per cycle, duty 0.5) and
scales the dynamic part by the toggle rate of that instance's output net from our own simulation
(OSU cells carry their internal power on the output pins, so OpenSTA scales it by output activity too).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fames.circuits import bitsim
from fames.circuits.liberty import load_cells
from fames.circuits.netlist import Netlist, parse_netlist
from fames.circuits.synth import synthesize
from fames.circuits.tools import cache_root, find_liberty, find_tool, liberty_hash, run_tool
from fames.errors import FamesError
from fames.multipliers.appmul import HardwareFigures
from fames.multipliers.formats import OperandFormat

FLOW_VERSION = "fames-flow-1"
CLOCK_NS = 10.0  # one fixed clock (100 MHz) for every multiplier, so energies compare
STREAM_LENGTH = 4096  # consecutive operand pairs whose toggles give the activity


class CharacterisationError(FamesError):
    """The mapped netlist does not compute the table it was supposed to compute."""


@dataclass(frozen=True)
class StaReport:
    delay_ns: float
    instances: dict[str, tuple[float, float, float]]  # name -> internal, switching, leakage (W) at activity 1


def sta_script(liberty: Path, netlist_file: str, top: str, clock_ns: float) -> str:
    """OpenSTA commands: timing at `clock_ns`, per-instance power at activity 1."""
    return "\n".join(
        [
            f"read_liberty {liberty}",
            f"read_verilog {netlist_file}",
            f"link_design {top}",
            f"create_clock -name clk -period {clock_ns}",
            "set_input_delay 0 -clock clk [all_inputs]",
            "set_output_delay 0 -clock clk [all_outputs]",
            "set_power_activity -global -activity 1.0 -duty 0.5",
            "report_checks -path_delay max -digits 6",
            "report_power -instances [get_cells *] -digits 10",
            "exit",
            "",
        ]
    )


def run_sta(mapped: str, top: str, clock_ns: float, liberty: Path) -> StaReport:
    """Run OpenSTA on a mapped netlist and parse the critical path and per-instance power."""
    sta = find_tool("sta")
    with tempfile.TemporaryDirectory(prefix="fames-sta-") as tmp:
        Path(tmp, "mapped.v").write_text(mapped)
        Path(tmp, "run.tcl").write_text(sta_script(liberty, "mapped.v", top, clock_ns))
        res = run_tool([sta, "-no_splash", "-exit", "run.tcl"], cwd=Path(tmp), timeout=600)
    text = res.stdout + res.stderr
    if res.returncode != 0 or re.search(r"(?m)^Error", text):
        err = next((ln for ln in text.splitlines() if ln.startswith("Error")), text.strip()[-200:])
        raise RuntimeError(f"OpenSTA failed on {top!r}: {err}")
    m = re.search(r"(-?[\d.eE+-]+)\s+data arrival time", text)
    delay = float(m.group(1)) if m else 0.0
    num = r"(-?\d[\d.eE+-]*)"
    inst = {
        name: (float(i), float(s), float(lk))
        for i, s, lk, _, name in re.findall(rf"(?m)^\s*{num}\s+{num}\s+{num}\s+{num}\s+(\S+)\s*$", text)
    }
    return StaReport(delay, inst)


def power_uw(netlist: Netlist, report: StaReport, toggles: dict[str, tuple[float, float]]) -> float:
    """Total power (uW): leakage plus each instance's dynamic power scaled by its output toggle rate."""
    total = 0.0
    for gate in netlist.gates:
        internal, switching, leakage = report.instances.get(gate.name, (0.0, 0.0, 0.0))
        rates = [toggles.get(net, (0.0, 0.0))[0] for net in gate.outputs.values()]
        total += leakage + (internal + switching) * (sum(rates) / max(len(rates), 1))
    return total * 1e6


def _activity_key(activity: str | np.ndarray, fmt: OperandFormat) -> tuple[str, np.ndarray | None]:
    if isinstance(activity, str):
        if activity != "uniform":
            raise ValueError(
                f"activity must be 'uniform' or a {fmt.shape} probability matrix, got {activity!r}"
            )
        return "uniform", None
    weights = np.asarray(activity, dtype=np.float64)
    digest = hashlib.sha256(np.ascontiguousarray(weights).tobytes()).hexdigest()[:12]
    return f"dist-{digest}", weights


def cache_key(
    verilog: str, top: str, fmt: OperandFormat, liberty: Path, clock_ns: float, activity: str
) -> str:
    blob = json.dumps([FLOW_VERSION, verilog, top, fmt.name, liberty_hash(liberty), clock_ns, activity])
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_dir() -> Path:
    return cache_root() / "char"


def _cache_read(key: str) -> dict | None:
    path = _cache_dir() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_write(key: str, record: dict) -> None:
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key[:12]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, folder / f"{key}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify(table: np.ndarray, expected: np.ndarray | None, top: str) -> None:
    if expected is None:
        return
    expected = np.asarray(expected)
    if expected.shape != table.shape:
        raise CharacterisationError(
            f"{top}: expected table has shape {expected.shape}, circuit gives {table.shape}"
        )
    bad = np.argwhere(table != expected)
    if len(bad):
        r, c = bad[0]
        raise CharacterisationError(
            f"{top}: mapped netlist differs from the expected table in {len(bad)} entries "
            f"(first at row {r}, column {c}: circuit {table[r, c]}, expected {expected[r, c]})"
        )


def characterise(
    verilog: str,
    top: str,
    fmt: OperandFormat,
    *,
    clock_ns: float = CLOCK_NS,
    expected_table: np.ndarray | None = None,
    activity: str | np.ndarray = "uniform",
    seed: int = 0,
    use_cache: bool = True,
    frontend: str = "verilog",
) -> tuple[HardwareFigures, np.ndarray, str]:
    """Synthesise, verify exhaustively and measure one multiplier.

    Args:
        verilog: Verilog source; module `top` has ports ``a[BA]``, ``b[BW]``, ``y[BA+BW]``.
        top: top module name.
        fmt: operand format (y is two's complement when either operand is signed).
        clock_ns: clock period for power and energy.
        expected_table: when given, the circuit must compute exactly this table.
        activity: ``"uniform"`` operands, or an |A|x|W| probability matrix of operand pairs.
        seed: seed of the random operand stream giving the switching activity.
        use_cache: read/write the result cache (``$FAMES_CACHE/char``).
        frontend: ``"verilog"``, or ``"blif"`` when `verilog` holds BLIF text.

    Returns:
        (hardware figures, the table the mapped netlist computes, the mapped netlist).

    Raises:
        CharacterisationError: when the netlist does not compute `expected_table`.
        ValueError: malformed Verilog or wrong ports.
        RuntimeError / FileNotFoundError: missing tools or liberty.
    """
    liberty = find_liberty()
    act_name, weights = _activity_key(activity, fmt)
    act_label = f"sim:{act_name}:{STREAM_LENGTH}:seed{seed}"
    key = cache_key(frontend + verilog, top, fmt, liberty, clock_ns, act_label)
    record = _cache_read(key) if use_cache else None
    if record is not None:
        table = np.asarray(record["table"], dtype=np.int64)
        _verify(table, expected_table, top)
        return HardwareFigures.from_dict(record["hardware"]), table, record["netlist"]
    mapped = synthesize(verilog, top, liberty=liberty, frontend=frontend)
    netlist = parse_netlist(mapped, load_cells(liberty))
    values = bitsim.simulate_all(netlist, fmt)
    table = bitsim.decode_table(values, fmt)
    _verify(table, expected_table, top)
    stream = bitsim.operand_stream(fmt, STREAM_LENGTH + 1, seed, weights)
    toggles = bitsim.activities(values, [n for g in netlist.gates for n in g.outputs.values()], stream)
    if netlist.gates:
        report = run_sta(mapped, netlist.top, clock_ns, liberty)
        power = power_uw(netlist, report, toggles)
        delay = report.delay_ns
    else:
        power, delay = 0.0, 0.0
    hw = HardwareFigures(
        area_um2=netlist.area(),
        delay_ns=delay,
        power_uw=power,
        energy_pj=power * clock_ns * 1e-3,
        clock_ns=clock_ns,
        activity=act_label,
        cells=len(netlist.gates),
        liberty=liberty.stem.replace("_stdcells", ""),
    )
    if use_cache:
        _cache_write(key, {"hardware": hw.to_dict(), "table": table.tolist(), "netlist": mapped})
    return hw, table, mapped
