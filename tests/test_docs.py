"""
The documentation stands alone and names what exists: no pointer to notes outside the repository,
every link between the README and docs/ resolves, and the data-flow diagram names, for each of
its arrows, modules that are really there.
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
TEXT_SUFFIXES = {".py", ".js", ".mjs", ".md", ".html", ".css", ".txt", ".toml", ".example", ".cfg", ".ini", ".sh"}
SKIPPED_DIRS = {".git", ".venv", ".ci", "node_modules", "staticfiles", "__pycache__", "test-artifacts"}
# Built from parts so that this file does not match itself.
OUTSIDE_NOTES = re.compile("shared" + "/")


def project_files():
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRS]
        for name in files:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or name == ".env.example":
                yield path


def test_nothing_points_outside_the_repository():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in project_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE_NOTES.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # another site, or a place on the same page
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert broken == []


def diagram(page: Path) -> str:
    """The data-flow diagram: the code block that starts with the browser's line."""
    match = re.search(r"```\n(browser: .*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"{page.name} has no data-flow diagram"
    return match.group(1)


def resolve(name: str) -> Path:
    """The diagram's rule: Python modules are under conversations/ unless the path starts with
    voiceproject/; the browser's modules are in static/voice/ unless the path says otherwise."""
    if name.startswith(("voiceproject/", "static/", "templates/", "conversations/")):
        return ROOT / name
    return ROOT / ("conversations" if name.endswith(".py") else "static/voice") / name


MODULE = re.compile(r"[\w/]+\.(?:py|js|html)\b")


def test_the_readme_diagram_names_existing_modules_for_every_arrow():
    text = diagram(ROOT / "README.md")
    arrows = re.split(r"^(?=\d\. )", text, flags=re.MULTILINE)[1:]
    assert len(arrows) == 4
    for arrow in arrows:
        assert MODULE.search(arrow), f"this arrow names no module: {arrow.splitlines()[0]}"
    missing = [name for name in MODULE.findall(text) if not resolve(name).is_file()]
    assert missing == []


def test_architecture_page_shows_the_same_diagram():
    assert diagram(ROOT / "docs" / "architecture.md") == diagram(ROOT / "README.md")
