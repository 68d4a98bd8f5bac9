"""The README's Python example runs as written (its C++ example is compiled and
run by the ctest test consumer_find_package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(language: str) -> str:
    text = README.read_text()
    marker = f"<!-- example: {language} -->\n```{language}\n"
    start = text.index(marker) + len(marker)
    return text[start:text.index("\n```", start)]


def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.read_text().splitlines()[:20])
    assert "make demo" in head and "make test" in head


def test_python_example_runs_as_written():
    out = subprocess.run([sys.executable, "-c", _example("python")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loss = float(out.stdout.split()[-1])
    assert 0 < loss < 1.2  # it trained: the targets have variance ≈ 1
