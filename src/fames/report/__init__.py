"""The output folder of a run: records, plots, Markdown/HTML report and Verilog, written atomically.

Layout of ``out_dir``::

    summary.json  assignment.json  [assignment.offsets.json]  report.md  report.html  plots/*.png
    verilog/{*.v, manifest.json, manifest.csv}
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fames.errors import UsageError
from fames.report.html import write_html
from fames.report.markdown import write_markdown
from fames.report.plots import PLOTS, write_plots
from fames.report.summary import write_assignment, write_offsets, write_summary
from fames.report.verilog import write_verilog


def check_out_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an existing output folder unless `force`; call before long work to fail early.

    Raises:
        UsageError: `out_dir` exists (and `force` is False) or is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    if out.exists() and not force:
        raise UsageError(f"output folder {out} exists (use --force)")
    return out


def write_report(result: Any, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write the whole output folder for a `RunResult`, atomically.

    Everything goes into a temporary folder next to `out_dir`, renamed into place at the end; on any
    failure the temporary folder is removed and an existing `out_dir` is left untouched.

    Args:
        result: a `fames.pipeline.RunResult`.
        out_dir: the folder to create.
        force: replace an existing folder.

    Returns:
        `out_dir` as a Path.

    Raises:
        UsageError: `out_dir` exists and `force` is False.
    """
    out = check_out_dir(out_dir, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_summary(result.summary(), tmp)
        write_assignment(result.assignment, tmp)
        write_offsets(result.offsets, tmp)
        plots = write_plots(result, tmp)
        write_markdown(result, plots, tmp)
        write_html(result, plots, tmp)
        write_verilog(result.layers, result.library, tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


__all__ = ["PLOTS", "check_out_dir", "write_report"]
