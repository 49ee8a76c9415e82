"""The ```python blocks of docs/index-and-collections.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "index-and-collections.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index: int, served: object, capsys: pytest.CaptureFixture) -> None:
    # `served` makes sure the servers work here (skips otherwise); each block starts its own
    code = compile(BLOCKS[index], f"{DOC.name}[block {index}]", "exec")
    exec(code, {"__name__": f"doc_block_{index}"})
    assert capsys.readouterr().out.strip()
