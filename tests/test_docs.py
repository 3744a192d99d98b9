"""The repository's own documentation: docs/file-formats.md is what the code and the README
cite for file formats and docs/algorithm.md for the algorithm, every section they cite
exists, and nothing cites a document outside the repository (DATA_CONTRACT.md and the
algorithm notes live beside it, not in it)."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "docs" / "file-formats.md"
METHOD_DOC = ROOT / "docs" / "algorithm.md"

#: A citation of the algorithm notes that live outside the repository (upper case, so that
#: docs/algorithm.md does not match; built so that this file does not cite them itself).
_OUTSIDE_NOTES = re.compile(r"\b" + "ALGO" + r"RITHM\b")

#: A citation of docs/algorithm.md: the file name, a comma, and one or more quoted section
#: titles separated by commas or "and"; the group holds the titles.
_METHOD_CITATION = re.compile(r'docs/algorithm\.md, ((?:"[^"]+"(?:, | and ))*"[^"]+")')

_TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".toml", ".yaml", ".yml", ".ipynb", ".cfg"}


def _repository_texts() -> list[Path]:
    """The package, benchmarks, tests, docs, examples, notebooks and the README."""
    files = [ROOT / "README.md"]
    for folder in ("dcr_dask", "benchmarks", "tests", "docs", "examples", "notebooks", "deploy"):
        files += sorted(
            path
            for path in (ROOT / folder).rglob("*")
            if path.suffix in _TEXT_SUFFIXES and path.is_file()
        )
    return files


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


def _algorithm_headings() -> set[str]:
    return set(re.findall(r"^#{2,4} (.+)$", METHOD_DOC.read_text(), flags=re.MULTILINE))


def test_nothing_cites_the_algorithm_notes_outside_the_repository():
    citing = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _repository_texts()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE_NOTES.search(line)
    ]
    assert not citing, citing


def test_every_cited_section_of_the_algorithm_exists():
    headings = _algorithm_headings()
    cited: dict[str, set[str]] = {}
    for path in _repository_texts():
        text = " ".join(path.read_text(encoding="utf-8").split())
        for group in _METHOD_CITATION.findall(text):
            for title in re.findall(r'"([^"]+)"', group):
                cited.setdefault(title, set()).add(str(path.relative_to(ROOT)))
    assert {"The iteration", "CompareWarp artifacts", "Convergence and stopping rules"} <= set(
        cited
    )
    unknown = {title: files for title, files in cited.items() if title not in headings}
    assert not unknown, unknown
    anchors = {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in headings}
    own = set(re.findall(r"\]\(#([\w\-]+)\)", METHOD_DOC.read_text()))
    assert own <= anchors, own - anchors


def test_every_module_the_algorithm_names_exists():
    """Each section of docs/algorithm.md names the module that implements it, and every
    ``dcr_dask...`` name in it is a module, or a function or class of one."""
    text = METHOD_DOC.read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert sections
    for section in sections:
        assert "`dcr_dask." in section, section.splitlines()[0]
    for name in sorted(set(re.findall(r"`(dcr_dask(?:\.\w+)+)`", text))):
        module, _, attribute = name, "", ""
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            module, _, attribute = name.rpartition(".")
            assert hasattr(importlib.import_module(module), attribute), name


def test_no_unfilled_placeholder_is_left_in_the_prose():
    """A figure written as a ``{name}`` template and never filled in (the README's status
    once read "all stars {g_all}"): outside code, no ``{word}`` is left in the documents."""
    documents = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "benchmarks").glob("*.md")),
    ]
    for path in documents:
        prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
        prose = re.sub(r"`[^`\n]*`", "", prose)
        assert re.findall(r"\{[a-z_]+\}", prose) == [], path.name
