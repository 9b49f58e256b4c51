"""The project carries its own documentation, and every citation of it resolves (docs/README.md).

Citation rule (docs/README.md, "How to cite a section"): a numbered section is cited with the
page's repository path, `docs/<page>.md §N`, from any tracked file; lists and ranges keep the page
(`§5, §7`, `§10.4-10.7`). A page name without `docs/`, or the design contract's old names, is
rejected with the prefixed form to write instead.
"""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# The design notes the project started from live outside the repository; nothing may point there.
# (Split so that this file does not match itself.)
OUTSIDE_SPECS = ("shared" + "/design", "shared" + "/seed")

# Each page keeps the section numbers of the spec it summarises, because code and messages cite
# them: these must all exist as headings.
EXPECTED_SECTIONS = {
    "hhl.md": [str(n) for n in range(1, 15)] + ["3.1", "11.1"] + [f"10.{n}" for n in range(1, 8)],
    "arn_triplet_eval.md": ["1", "2", "3", "4", "5"]
    + [f"1.{n}" for n in range(1, 5)] + [f"2.{n}" for n in range(1, 6)]
    + [f"3.{n}" for n in range(1, 7)] + [f"4.{n}" for n in range(1, 5)],
    "design.md": [str(n) for n in range(1, 12)] + [f"6.{n}" for n in range(1, 6)],
}

_NUMBER = r"\d+(?:\.\d+)*"
# A page followed by a section sign: a path ending in .md, "design README", or "README" alone
# (both the old names of the design contract). The section list that follows keeps the page:
# ", §7", " and §7", "/§12", and ranges "-10.3" or "-§5". A line break (with comment leaders)
# may sit between the page and the section sign.
CITATION = re.compile(
    r"(?<![\w./-])(?P<page>(?:[\w-]+/)*[\w.-]+\.md|design(?:\s|#)+README|README)"
    r"[`)]?[ \t]*(?:\n[ \t#*>/]*)?§[ \t]*(?P<first>" + _NUMBER + r")"
    r"(?P<rest>(?:[ \t]*(?:,[ \t]*(?:and|or)?|/|and|or)[ \t]*§[ \t]*" + _NUMBER + r"|[ \t]*[-–][ \t]*§?[ \t]*"
    + _NUMBER + r")*)")
DOCS_PATH = re.compile(r"(?<![\w./-])docs/(?:[\w.-]+/)*[\w.-]+\.md(?![\w/])")
MD_LINK = re.compile(r"\[[^\]\n]*\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+§?(?P<number>" + _NUMBER + r")\.?[ \t]", re.MULTILINE)
BARE_SECTION = re.compile(r"(?<!paper )§[ \t]*(?P<number>" + _NUMBER + r")")


def _git(*args):
  try:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
  except FileNotFoundError:
    pytest.skip("git is not installed")


def _tracked_texts():
  """{repository-relative path: text} of every tracked text file present in the work tree."""
  listing = _git("ls-files", "-z")
  if listing.returncode != 0:
    pytest.skip(f"not a git checkout: {listing.stderr.strip()}")
  texts = {}
  for name in listing.stdout.split("\0"):
    path = REPO / name
    if not name or not path.is_file():
      continue
    data = path.read_bytes()
    if b"\0" in data:
      continue
    try:
      texts[name] = data.decode("utf-8")
    except UnicodeDecodeError:
      continue
  return texts


def _headings(page: Path) -> list[str]:
  return [m.group("number") for m in HEADING.finditer(page.read_text(encoding="utf-8"))]


def _citations(texts):
  """(file, line, cited text, page, [section numbers]) for every page-and-section citation."""
  for name, text in texts.items():
    for m in CITATION.finditer(text):
      numbers = [m.group("first")] + re.findall(_NUMBER, m.group("rest"))
      line = text.count("\n", 0, m.start()) + 1
      page = " ".join(re.split(r"[\s#]+", m.group("page")))
      yield name, line, " ".join(m.group(0).split()), page, numbers


def _prefixed_form(page: str) -> str:
  if page.startswith("design") or page == "README":
    return "docs/design.md"
  candidate = "docs/" + Path(page).name
  return candidate if (REPO / candidate).is_file() else f"docs/<page>.md ({page} is not a docs page)"


def test_nothing_points_outside_the_repository():
  args = ["grep", "-n", "-F"]
  for pattern in OUTSIDE_SPECS:
    args += ["-e", pattern]
  found = _git(*args)
  assert found.returncode == 1 and not found.stdout, (
      "the repository must not refer to the design notes outside it; cite docs/ instead:\n"
      + found.stdout[:4000])


def test_pages_keep_their_section_numbers():
  for page, expected in EXPECTED_SECTIONS.items():
    path = DOCS / page
    assert path.is_file(), f"docs/{page} is missing"
    headings = _headings(path)
    missing = [n for n in expected if n not in headings]
    assert not missing, f"docs/{page} lacks the numbered headings {missing}"
  for path in sorted(DOCS.glob("*.md")):
    headings = _headings(path)
    duplicated = sorted({n for n in headings if headings.count(n) > 1})
    assert not duplicated, f"docs/{path.name}: section numbers used twice: {duplicated}"


def test_prefixed_citations_resolve():
  texts = _tracked_texts()
  unresolved = []
  checked = 0
  for name, line, cited, page, numbers in _citations(texts):
    if not page.startswith("docs/"):
      continue
    path = REPO / page
    if not path.is_file():
      unresolved.append(f"{name}:{line}: {cited!r}: {page} does not exist")
      continue
    headings = set(_headings(path))
    checked += 1
    for number in numbers:
      if number not in headings:
        unresolved.append(f"{name}:{line}: {cited!r}: {page} has no section {number}")
  assert checked > 0, "no docs/ citation found at all: the citation pattern is broken"
  assert not unresolved, "\n".join(unresolved)


def test_citations_name_the_docs_page():
  """A citation without `docs/` (or with the old names of the design contract) is rejected."""
  bare = [f"{name}:{line}: {cited!r} -> cite {_prefixed_form(page)} §{numbers[0]}"
          for name, line, cited, page, numbers in _citations(_tracked_texts())
          if not page.startswith("docs/")]
  assert not bare, (f"{len(bare)} citations lack the docs/ prefix (docs/README.md, 'How to cite "
                    "a section'):\n" + "\n".join(bare[:60]) + ("\n..." if len(bare) > 60 else ""))


def test_sections_cited_within_a_page_exist():
  """Inside a docs page a bare §N means that page's own section (the paper's own sections are
  written 'paper §N')."""
  missing = []
  for path in sorted(DOCS.glob("*.md")):
    text = path.read_text(encoding="utf-8")
    own = set(_headings(path))
    for m in CITATION.finditer(text):  # blank out citations of pages, keeping line numbers
      text = text[:m.start()] + re.sub(r"[^\n]", " ", m.group(0)) + text[m.end():]
    for m in BARE_SECTION.finditer(text):
      if m.group("number") not in own:
        line = text.count("\n", 0, m.start()) + 1
        missing.append(f"docs/{path.name}:{line}: §{m.group('number')} is not a section of it")
  assert not missing, "\n".join(missing)


def test_docs_paths_and_markdown_links_exist():
  texts = _tracked_texts()
  missing = []
  for name, text in texts.items():
    for m in DOCS_PATH.finditer(text):
      if not (REPO / m.group(0)).is_file():
        line = text.count("\n", 0, m.start()) + 1
        missing.append(f"{name}:{line}: {m.group(0)} does not exist")
    if name.endswith(".md"):
      for m in MD_LINK.finditer(text):
        target = m.group("target")
        if "://" in target or target.startswith("mailto:"):
          continue
        if not ((REPO / name).parent / target).exists():
          line = text.count("\n", 0, m.start()) + 1
          missing.append(f"{name}:{line}: link target {target} does not exist")
  assert not missing, "\n".join(missing)


def test_citation_pattern_on_hand_written_cases():
  """The checker itself: what it reads as a citation, and what it leaves alone."""
  page, sep = "hhl" + ".md", " §"
  cases = {
      f"(docs/{page}{sep}5, §7; design)": [("docs/" + page, ["5", "7"])],
      f"docs/{page}{sep}14, and §12 row 14/§13": [("docs/" + page, ["14", "12"])],
      f"docs/{page}{sep}10.4-10.7 and docs/design.md{sep}3-§5": [
          ("docs/" + page, ["10.4", "10.7"]), ("docs/design.md", ["3", "5"])],
      f"# see docs/{page}\n#{sep}12 row 4": [("docs/" + page, ["12"])],
      f"x ({page}{sep}9)": [(page, ["9"])],
      f"design README{sep}6.1, §6.2": [("design README", ["6.1", "6.2"])],
      f"the README{sep}4 layout": [("README", ["4"])],
      f"docs/README.md{sep}2": [("docs/README.md", ["2"])],
      "paper §3.3 and §4.2 alone": [],
      f"[{page}]({page}) and docs/{page} without a section": [],
  }
  for text, expected in cases.items():
    found = [(page_, numbers) for _, _, _, page_, numbers in _citations({"x": text})]
    assert found == expected, (text, found)
  assert _prefixed_form("design README") == "docs/design.md"
  assert _prefixed_form(page) == "docs/" + page
