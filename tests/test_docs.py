"""The repository's own documentation: docs/file-formats.md is what the code and the README
cite for file formats, every section they cite exists, and nothing cites a document outside
the repository (DATA_CONTRACT.md lives beside it, not in it)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "docs" / "file-formats.md"


def _cited_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "dcr_dask").rglob("*.py"))]


def _headings() -> dict[str, str]:
    """Section title -> GitHub anchor, for every heading of docs/file-formats.md."""
    titles = re.findall(r"^#{2,4} (.+)$", FORMATS.read_text(), flags=re.MULTILINE)
    return {title: re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def test_nothing_cites_the_data_contract_outside_the_repository():
    for path in _cited_files():
        text = path.read_text(encoding="utf-8")
        assert "DATA_CONTRACT" not in text, path
        assert not re.search(r"data contract", text, flags=re.IGNORECASE), path


def test_every_cited_section_of_the_file_formats_exists():
    headings = _headings()
    anchors = set(headings.values())
    cited_sections, cited_anchors = set(), set()
    for path in _cited_files():
        text = " ".join(path.read_text(encoding="utf-8").split())
        cited_sections |= set(re.findall(r'docs/file-formats\.md, "([^"]+)"', text))
        cited_anchors |= set(re.findall(r"docs/file-formats\.md#([\w\-]+)", text))
    assert {"Input warps", "Visit keywords", "Output store"} <= cited_sections
    assert cited_sections <= set(headings), cited_sections - set(headings)
    assert cited_anchors <= anchors, cited_anchors - anchors
    # the table of contents of the document itself
    own = set(re.findall(r"\]\(#([\w\-]+)\)", FORMATS.read_text()))
    assert own <= anchors, own - anchors


def test_the_file_formats_name_what_the_code_reads_and_writes():
    """The keywords, variables and file names the readers and writers use appear in the
    document (a new one added to the code without a word here fails)."""
    from dcr_dask.io import metadata, store
    from dcr_dask.io.ownership import FITS_KEYWORD, WRITER_ATTR
    from dcr_dask.masks import STANDARD_PLANES

    text = FORMATS.read_text()
    names = [
        *metadata.VISIT_KEYS,
        *metadata.BAND_KEYS,
        *metadata.PHYSICAL_FILTER_KEYS,
        *store.OUTPUT_VARIABLES,
        *store._OUTPUT_ATTRS,
        *STANDARD_PLANES,
        FITS_KEYWORD,
        WRITER_ATTR,
    ]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, missing
