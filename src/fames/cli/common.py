"""Helpers shared by the CLI subcommands: progress bars, JSON output, argument parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm


class Progress:
    """A tqdm bar usable as a ``(step, total, info)`` callback; silent when `enabled` is False."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc = desc
        self.enabled = enabled and sys.stderr.isatty() or enabled == "always"
        self.bar: tqdm | None = None

    def __call__(self, step: int, total: int, info: dict | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, leave=False, dynamic_ncols=True)
        self.bar.n = step
        if info:
            self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in info.items()},
                                 refresh=False)
        self.bar.refresh()
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        from fames.errors import UsageError

        raise UsageError(f"{what}: expected comma-separated integers, got {text!r}") from None
