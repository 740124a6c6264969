"""A benchmark's printed lines and tables, also written as a Markdown fragment (``--report PATH``).

The docs' Benchmarks page includes these fragments (``docs/benchmarks/<script>.md``), so its figures are those of
the last run of each script, with the command, date and machine that produced them.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def add_argument(parser) -> None:
    """``--report PATH`` on a script's argument parser."""
    parser.add_argument(
        "--report", metavar="PATH", default=None,
        help="also write the printed lines and tables as Markdown to PATH (e.g. docs/benchmarks/<script>.md)",
    )  # fmt: skip


def number(value, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant digits (no exponent from 1e-3 up), NaN as empty."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, np.floating)):
        return str(value).replace("|", "\\|")
    if not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:.0f}"
    if magnitude >= -3:
        return f"{value:.{digits - 1 - magnitude}f}"
    return f"{value:.{digits - 1}e}"


def to_markdown(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> str:
    """A DataFrame as a Markdown table: index levels as the first columns, column levels joined by ", "."""
    frame = frame.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [", ".join(str(level) for level in col if str(level)) for col in frame.columns]
    if index:
        names = [name or "" for name in frame.index.names]
        frame.index.names = [name or f"level {i}" for i, name in enumerate(names)]
        frame = frame.reset_index()
        frame.columns = [*names, *frame.columns[len(names) :]]
    header = [number(str(col)).replace("_", "_<wbr>") for col in frame.columns]  # names may break after a "_"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(number(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


class Report:
    """Lines and tables of one benchmark run: printed as before, and kept for :meth:`write`."""

    def __init__(self, path: str | None = None):
        self.path, self.parts, self.load = path, [], os.getloadavg()[0]

    def print(self, *lines: str) -> None:
        """Print each line (flushed) and keep it as text of the fragment."""
        for line in lines:
            print(line, flush=True)
        self.parts.append("\n".join(line.strip("\n") for line in lines))

    def table(self, frame: pd.DataFrame, console: int | None = None, index: bool = True, markdown=None) -> None:
        """Keep ``frame`` (or the ``markdown`` frame, e.g. its transpose) as a Markdown table; with ``console``, also
        print ``frame`` rounded to that many decimals."""
        if console is not None:
            print(frame.round(console).to_string(index=index), flush=True)
        self.parts.append(to_markdown(frame if markdown is None else markdown, index=index))

    def write(self, threads: int | None = None) -> None:
        """Write the fragment to ``path`` (nothing without one): heading, command, date, machine, then the parts."""
        if self.path is None:
            return
        import torch

        script = Path(sys.argv[0]).resolve()
        root = Path(__file__).resolve().parent.parent
        script = script.relative_to(root) if script.is_relative_to(root) else script
        threads = threads or torch.get_num_threads()
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        machine = (
            f"{os.cpu_count()} CPUs ({_cpu_model()}), {threads} torch thread{'s' * (threads > 1)}, {device}; "
            f"torch {torch.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
            f"Python {platform.python_version()}; {platform.platform()}; load average (other work included) "
            f"{self.load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        )
        head = [
            f"### Output of `{script}`",
            f"Command: `{shlex.join(['python', str(script), *sys.argv[1:]])}`  \n"
            f"Date: {datetime.date.today().isoformat()}  \nMachine: {machine}",
        ]
        text = "\n\n".join(head + [_text(part) for part in self.parts]) + "\n"
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(text)
        print(f"\nwrote {self.path}")


def _text(part: str) -> str:
    """Tables as they are; printed lines as one paragraph, with ``*``, ``_`` and ``|`` taken literally."""
    if part.startswith("| "):
        return part
    return " ".join(line.strip() for line in part.splitlines()).translate({ord(c): "\\" + c for c in "*_|<"})


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"
