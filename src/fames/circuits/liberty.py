"""Combinational cells of a liberty file: area, pins and boolean functions (read, not hard-coded)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

Expr = tuple  # ("var", name) | ("const", 0/1) | ("not", e) | ("and"|"or"|"xor", e1, e2)


@dataclass(frozen=True)
class CellType:
    """One combinational standard cell.

    Args:
        name: cell name, e.g. ``NAND2X1``.
        area: cell area (liberty units, um^2 for OSU).
        inputs: input pin names.
        functions: output pin -> boolean expression tree of the input pins.
    """

    name: str
    area: float
    inputs: tuple[str, ...]
    functions: dict[str, Expr]

    def evaluator(self, pin: str) -> Callable[..., np.ndarray]:
        """A function of the input pins' uint64 bit vectors (keyword arguments) giving `pin`'s vector."""
        return _compile(self.functions[pin], self.inputs)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[01]|[!'^+|&*()]", text)


def parse_function(text: str) -> Expr:
    """Parse a liberty ``function`` (``!``/``'`` not, space/``&``/``*`` and, ``+``/``|`` or, ``^`` xor).

    Raises:
        ValueError: on a malformed expression.
    """
    toks = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def parse_or() -> Expr:
        e = parse_xor()
        while peek() in ("+", "|"):
            take()
            e = ("or", e, parse_xor())
        return e

    def parse_xor() -> Expr:
        e = parse_and()
        while peek() == "^":
            take()
            e = ("xor", e, parse_and())
        return e

    def parse_and() -> Expr:
        e = parse_unary()
        while peek() is not None and peek() not in ("+", "|", "^", ")"):
            if peek() in ("&", "*"):
                take()
            e = ("and", e, parse_unary())
        return e

    def parse_unary() -> Expr:
        tok = peek()
        if tok is None:
            raise ValueError(f"truncated liberty function {text!r}")
        take()
        if tok == "!":
            e: Expr = ("not", parse_unary())
        elif tok == "(":
            e = parse_or()
            if peek() != ")":
                raise ValueError(f"unbalanced parentheses in liberty function {text!r}")
            take()
        elif tok in ("0", "1"):
            e = ("const", int(tok))
        elif re.match(r"[A-Za-z_]", tok):
            e = ("var", tok)
        else:
            raise ValueError(f"unexpected {tok!r} in liberty function {text!r}")
        while peek() == "'":
            take()
            e = ("not", e)
        return e

    expr = parse_or()
    if pos != len(toks):
        raise ValueError(f"trailing tokens in liberty function {text!r}")
    return expr


def to_python(expr: Expr) -> str:
    """Python/numpy expression on uint64 words (``ONES`` is all-ones)."""
    kind = expr[0]
    if kind == "var":
        return f"v_{expr[1]}"
    if kind == "const":
        return "ONES" if expr[1] else "ZERO"
    if kind == "not":
        return f"(~{to_python(expr[1])})"
    op = {"and": "&", "or": "|", "xor": "^"}[kind]
    return f"({to_python(expr[1])} {op} {to_python(expr[2])})"


def to_verilog(expr: Expr, names: dict[str, str]) -> str:
    """Verilog expression, input pins renamed through `names`."""
    kind = expr[0]
    if kind == "var":
        return names[expr[1]]
    if kind == "const":
        return f"1'b{expr[1]}"
    if kind == "not":
        return f"~{to_verilog(expr[1], names)}"
    op = {"and": "&", "or": "|", "xor": "^"}[kind]
    return f"({to_verilog(expr[1], names)} {op} {to_verilog(expr[2], names)})"


@lru_cache(maxsize=256)
def _compile(expr: Expr, inputs: tuple[str, ...]) -> Callable[..., np.ndarray]:
    args = ", ".join(f"v_{p}" for p in inputs)
    env = {"ONES": np.uint64(0xFFFFFFFFFFFFFFFF), "ZERO": np.uint64(0)}
    return eval(f"lambda {args}: {to_python(expr)}", env)  # noqa: S307 - expression built by us


def _blocks(text: str, keyword: str) -> list[tuple[str, str]]:
    """``keyword (NAME) { ... }`` groups at any depth of `text`: (NAME, body)."""
    out = []
    for m in re.finditer(rf"\b{keyword}\s*\(\s*\"?([^)\"]*)\"?\s*\)\s*\{{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1).strip(), text[m.end() : i - 1]))
    return out


def _attr(body: str, name: str) -> str | None:
    m = re.search(rf"(?m)^\s*{name}\s*:\s*\"?([^;\"]*)\"?\s*;", body)
    return m.group(1).strip() if m else None


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict[str, CellType]:
    text = re.sub(r"/\*.*?\*/", "", Path(path).read_text(), flags=re.S)
    cells: dict[str, CellType] = {}
    for name, body in _blocks(text, "cell"):
        if re.search(r"\b(ff|latch|statetable)\s*\(", body):
            continue
        area = float(_attr(body, "area") or 0.0)
        inputs, functions, ok = [], {}, True
        for pin, pbody in _blocks(body, "pin"):
            direction = _attr(pbody, "direction")
            if direction == "input":
                inputs.append(pin)
            elif direction == "output":
                func = _attr(pbody, "function")
                if func is None or _attr(pbody, "three_state") is not None:
                    ok = False
                    break
                try:
                    functions[pin] = parse_function(func)
                except ValueError:
                    ok = False
                    break
        if ok and functions:
            cells[name] = CellType(name, area, tuple(inputs), functions)
    return cells


def load_cells(path: Path) -> dict[str, CellType]:
    """All combinational cells of the liberty at `path` (sequential and tri-state cells are left out)."""
    path = Path(path)
    return _load(str(path), path.stat().st_mtime)
