"""Shared by the benchmarks: a fixed, printed setup and a summary of ratios measured in one run.

Run: ``python -m pytest benchmarks/`` (or one file). Timings are medians from pytest-benchmark; the
summary prints each ratio against the baseline named by the issue, with the setup it was measured
on, and writes it to benchmarks/results/<name>.json.
"""

from __future__ import annotations

import json
import os
import platform
from collections import defaultdict
from pathlib import Path

import pytest
import torch

import ebir_fast

THREADS = 2
RESULTS_DIR = Path(__file__).parent / "results"


class Report:
    """Collects measurements from benchmark tests and prints them at the end of the session."""

    def __init__(self) -> None:
        self.sections: dict[str, dict] = defaultdict(dict)
        self.summaries: dict[str, list[str]] = defaultdict(list)

    def record(self, section: str, key: str, value: object) -> None:
        self.sections[section][key] = value

    def summary(self, section: str, line: str) -> None:
        self.summaries[section].append(line)


REPORT = Report()


def setup_line() -> str:
    info = ebir_fast.build_info()
    return (
        f"torch {torch.__version__}, ebir-fast {ebir_fast.__version__}, "
        f"threads {torch.get_num_threads()}, cpu isa {info.get('cpu_isa', 'n/a')}, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )


@pytest.fixture(scope="session", autouse=True)
def _fixed_threads():
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def report() -> Report:
    return REPORT


def pytest_terminal_summary(terminalreporter):
    if not REPORT.summaries:
        return
    write = terminalreporter.write_line
    RESULTS_DIR.mkdir(exist_ok=True)
    for section, lines in REPORT.summaries.items():
        terminalreporter.section(section)
        write(f"setup: {setup_line()}")
        for line in lines:
            write(line)
        path = RESULTS_DIR / f"{section.split()[0]}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {"setup": setup_line(), "results": REPORT.sections[section], "summary": lines},
                indent=2,
                default=str,
            )
        )
        os.replace(tmp, path)
