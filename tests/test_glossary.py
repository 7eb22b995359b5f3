"""docs/glossary.md defines the course's terms once, and every notebook links to it.

The terms a newcomer to MONAI meets undefined (HU, affine, RAS/LPS, MetaTensor, logits,
one-hot, ...) each have an entry; every link a notebook makes into the glossary lands on an
existing entry (GitHub's heading anchors), and every notebook makes some.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from spleen_helpers.teaching.notebook_cells import REPO_REF, REPO_SLUG

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"
GLOSSARY_URL = f"https://github.com/{REPO_SLUG}/blob/{REPO_REF}/docs/glossary.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Terms the course uses that a newcomer must be able to look up.
REQUIRED = ["HU", "Affine", "RAS and LPS", "MetaTensor", "Logits", "One-hot", "Decollate", "Sliding window",
            "HD95", "PACS", "DICOM SEG", "SNOMED CT", "Domain shift", "parameters cell",
            "SPLEEN environment variables", "Soft Dice loss", "Dice", "IoU", "UNet"]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def terms() -> list[str]:
    return re.findall(r"^### (.+)$", GLOSSARY.read_text(encoding="utf-8"), re.MULTILINE)


def test_anchor() -> None:
    assert anchor("Task09 (Medical Segmentation Decathlon)") == "task09-medical-segmentation-decathlon"
    assert anchor("SPLEEN environment variables") == "spleen-environment-variables"


def test_glossary_defines_every_term_once_and_at_least_25() -> None:
    found = terms()
    assert len(found) >= 25, f"the glossary defines {len(found)} terms"
    assert len(set(map(anchor, found))) == len(found), "a term is defined twice"
    assert not [t for t in REQUIRED if t not in found], "terms missing from the glossary"
    text = GLOSSARY.read_text(encoding="utf-8")
    for entry in text.split("\n### ")[1:]:
        body = entry.split("\n", 1)[1].split("\n## ")[0].strip()
        assert body and len(body) < 700, f"the entry {entry.splitlines()[0]!r} is empty or too long"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_links_its_terms_to_existing_entries(path: Path) -> None:
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    links = re.findall(re.escape(GLOSSARY_URL) + r"#([\w\-]+)\)", text)
    assert len(links) >= 5, f"{path.name}: links {len(links)} terms to docs/glossary.md"
    known = set(map(anchor, terms()))
    assert not sorted(set(links) - known), f"{path.name}: glossary links to no entry"
