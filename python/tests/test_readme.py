"""The README's "Use from Python" example prints what the README says."""

from __future__ import annotations

import contextlib
import io
import os
import re

from conftest import ROOT


def test_readme_python_example():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```\n\nprints[^\n]*\n\n```text\n(.*?)```", section, re.S)
    assert m, "the example and its output"
    code, expected = m.group(1), m.group(2)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert out.getvalue() == expected
