"""``report.html``: a self-contained page (plots embedded as base64 PNG, no external resources)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from fames.report.markdown import PLOT_CAPTIONS, key_figures, layer_table

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{font-size:90%}"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def embed_png(path: Path) -> str:
    """A ``data:image/png;base64,...`` URI of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(result: Any, plots: dict[str, Path]) -> str:
    """The HTML page."""
    title = f"fames report: {result.inputs.get('model') or 'model'} on {result.config.get('dataset')}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             _table(["", "value"], [list(r) for r in key_figures(result)]),
             f"<p><b>How the choice was made.</b> {html.escape(result.explanation)}</p>",
             "<h2>Layers</h2>", _table(*layer_table(result)), "<h2>Plots</h2>"]
    for name, path in plots.items():
        caption = html.escape(PLOT_CAPTIONS.get(name, name))
        parts.append(f"<figure><img alt='{name}' src='{embed_png(path)}'><figcaption>{caption}</figcaption>"
                     "</figure>")
    parts += ["<h2>Time per stage</h2>",
              _table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in result.timings.items()])]
    prov = [[k, str(v)] for k, v in result.inputs.items() if k != "hashes"]
    prov += [[f"sha256 {k}", v] for k, v in result.inputs.get("hashes", {}).items()]
    prov.append(["fames version", result.fames_version])
    parts += ["<h2>Inputs and provenance</h2>", _table(["", ""], prov), "</body></html>\n"]
    return "\n".join(parts)


def write_html(result: Any, plots: dict[str, Path], out_dir: Path) -> Path:
    """Write ``report.html``. Returns its path."""
    path = Path(out_dir) / "report.html"
    path.write_text(render_html(result, plots))
    return path
