"""The field table of the reference ``DcrAssembleCoaddConfig`` document, as test data.

``tests/test_config.py`` checks the configuration against the reference
document's attribute table (name, first sentence, doc, type, default, valid
range). The document lives outside the repository, so the table is kept here
as ``reference_fields.json``, generated once from the document by this script::

    python tests/data/reference_fields.py path/to/DcrAssembleCoaddConfig.txt

The test ``test_reference_fields_match_the_document`` regenerates the table
from the document when it is present and compares it with the stored one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("reference_fields.json")


def parse_reference(text: str) -> dict[str, dict[str, Any]]:
    """The attribute table of the reference document.

    Parameters
    ----------
    text : str
        The document: its "Attributes Summary" and "Attributes Documentation" sections.

    Returns
    -------
    dict of str to dict
        ``{attribute: {"summary", "doc", "type", "default", "range"}}``, in the
        document's order; "doc", "type" and "default" are absent for attributes
        declared without them (``history``), "range" for those without a valid range.
    """
    summary_text = text.split("Attributes Summary", 1)[1].split("Methods Summary", 1)[0]
    attributes: dict[str, dict[str, Any]] = {}
    for line in summary_text.strip().splitlines():
        if line.strip():
            name, _, summary = line.strip().partition(" ")
            attributes[name] = {"summary": summary}
    docs_text = text.split("Attributes Documentation", 1)[1].split("Methods Documentation", 1)[0]
    current = None
    blocks: dict[str, list[str]] = {}
    for line in docs_text.splitlines():
        if line.strip() in attributes:
            current = line.strip()
            blocks[current] = []
        elif line.strip() and current is not None:
            blocks[current].append(line.strip())
    for name, lines in blocks.items():
        entry = attributes[name]
        for line in lines:
            valid = re.fullmatch(r"Valid Range = (.*)", line)
            if valid:
                entry["range"] = valid.group(1)
                continue
            declared = re.fullmatch(r"(.*) \((\w+), default (.*)\)", line)
            if declared:
                entry["doc"], entry["type"], entry["default"] = declared.groups()
    return attributes


def render(table: dict[str, dict[str, Any]]) -> str:
    """The table as the text stored in ``reference_fields.json``."""
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write ``reference_fields.json`` from the document named by ``argv[0]``."""
    if len(argv) != 1:
        print(f"usage: python {sys.argv[0]} DcrAssembleCoaddConfig.txt", file=sys.stderr)
        return 2
    table = parse_reference(Path(argv[0]).read_text(encoding="utf-8"))
    TABLE.write_text(render(table), encoding="utf-8")
    print(f"{TABLE}: {len(table)} attributes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
