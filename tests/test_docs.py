"""Every Python snippet in docs/*.md and README.md runs (or says, in the doc, why it cannot).

The rule, for whoever writes docs: a ```python block **runs**, in a fresh interpreter at the
repository root, top-level ``await`` allowed, within 45 s. An HTML comment on the line right
before the fence changes that, and only this way:

    <!-- snippet: harness=NAME -->      runs between setup(ns) and check(ns) of
                                         tests/snippets/NAME.py (names the snippet assumes,
                                         and a check that what it defines works)
    <!-- snippet: continues -->         runs after the previous python block of the same file,
                                         in its namespace (combine: "continues; harness=NAME")
    <!-- snippet: fragment: REASON -->  an excerpt that cannot run alone: only compiled, as the
                                         body of an ``async def`` (so await/yield/return parse)
    <!-- snippet: signature: REASON --> not Python syntax (a signature listing): not compiled
    <!-- snippet: typed -->              also passes ``mypy --strict`` on its own, after
                                         tests/snippets/typed_prelude.py (combine with the others:
                                         "continues; typed"): the recipes a typed app copies

A failure names the Markdown file and the line of the fence; tracebacks point into the ``.md``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<body>.*?)\s*-->$")
HOW = (
    "mark it in the doc, on the line before the fence: <!-- snippet: harness=NAME -->, "
    "<!-- snippet: continues -->, <!-- snippet: fragment: why -->; see tests/test_docs.py"
)


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    fence: int  # 1-based line of the opening fence
    source: str
    harnesses: tuple[str, ...] = ()
    continues: bool = False
    fragment: str | None = None
    signature: str | None = None
    typed: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.fence}"


def parse_marker(text: str, where: str) -> dict[str, object]:
    options: dict[str, object] = {}
    kind, colon, reason = text.partition(":")
    if kind.strip() in ("fragment", "signature"):
        # The reason is free text (it may hold ";" or "="): it runs to the end.
        if not colon or not reason.strip():
            raise ValueError(f"{where}: '{kind.strip()}' needs a reason after a colon; {HOW}")
        return {kind.strip(): reason.strip()}
    harnesses: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, equals, value = (x.strip() for x in part.partition("="))
        if key == "continues" and not equals:
            options["continues"] = True
        elif key == "typed" and not equals:
            options["typed"] = True
        elif key == "harness" and value:
            if not (ROOT / "tests" / "snippets" / f"{value}.py").exists():
                raise ValueError(f"{where}: no harness tests/snippets/{value}.py")
            harnesses.append(value)
        else:
            raise ValueError(f"{where}: cannot read the snippet marker {part!r}; {HOW}")
    options["harnesses"] = harnesses
    return options


def blocks_of(path: Path) -> list[Block]:
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith("```"):
            i += 1
            continue
        fence, indent = stripped[: len(stripped) - len(stripped.lstrip("`"))], lines[i].find("`")
        language = stripped[len(fence) :].strip().split()[0] if stripped[len(fence) :] else ""
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == fence),
            None,
        )
        if end is None:
            raise ValueError(f"{rel}:{i + 1}: a ``` fence that is never closed")
        if language in ("python", "py", "python3"):
            previous = lines[i - 1].strip() if i > 0 else ""
            marker = MARKER.match(previous)
            options = parse_marker(marker["body"], f"{rel}:{i + 1}") if marker else {}
            # A block inside a list item is indented like its fence: take that off.
            body = "\n".join(
                line[indent:] if not line[:indent].strip() else line for line in lines[i + 1 : end]
            )
            found.append(
                Block(
                    rel,
                    i + 1,
                    textwrap.dedent(body) + "\n",
                    tuple(options.get("harnesses", ())),  # type: ignore[arg-type]
                    bool(options.get("continues")),
                    options.get("fragment"),  # type: ignore[arg-type]
                    options.get("signature"),  # type: ignore[arg-type]
                    bool(options.get("typed")),
                )
            )
        i = end + 1
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks_of(path)]


def chain(block: Block) -> list[Block]:
    """The block, after every block it continues (the previous ones of its file)."""
    blocks = [b for b in blocks_of(ROOT / block.path) if b.fence <= block.fence]
    steps = [blocks.pop()]
    while steps[0].continues:
        if not blocks:
            raise ValueError(f"{steps[0].where}: 'continues', but no python block before it")
        steps.insert(0, blocks.pop())
        if steps[0].fragment or steps[0].signature:
            raise ValueError(f"{steps[1].where} continues {steps[0].where}, which does not run")
    return steps


BLOCKS = all_blocks()


def test_there_are_snippets_to_test() -> None:
    # The harness reads the files it is meant to: a broken parser would pass every doc.
    assert {b.path for b in BLOCKS} >= {"README.md", "docs/server.md", "docs/client.md"}
    assert sum(1 for b in BLOCKS if not (b.fragment or b.signature)) >= 10


CONFLICT_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def test_no_document_holds_merge_conflict_markers() -> None:
    # A merge once left a conflict in docs/portal.md that no other check read.
    found = [
        f"{path.relative_to(ROOT)}:{path.read_text()[: m.start()].count(chr(10)) + 1}"
        for path in documents()
        for m in CONFLICT_MARKER.finditer(path.read_text())
    ]
    assert not found, f"merge conflict markers left in: {', '.join(found)}"


def test_a_marker_that_cannot_be_read_names_its_place_and_the_rule(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        parse_marker("skip", "docs/x.md:7")
    assert str(info.value).startswith("docs/x.md:7: cannot read the snippet marker 'skip'")
    assert "fragment: why" in str(info.value)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_snippet(block: Block) -> None:
    if block.signature:
        # Not Python syntax: nothing to compile. The marker keeps the reason in the doc.
        return
    if block.fragment:
        wrapped = "\n" * (block.fence - 1) + "async def _fragment():\n"
        wrapped += textwrap.indent(block.source, "    ") + "    pass\n"
        try:
            ast.parse(wrapped, filename=block.path)
        except SyntaxError as exc:
            pytest.fail(f"{block.path}:{exc.lineno}: the fragment does not parse: {exc.msg}")
        return
    steps = [
        {"path": b.path, "line": b.fence + 1, "source": b.source, "harnesses": list(b.harnesses)}
        for b in chain(block)
    ]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.snippets._run"],
            cwd=ROOT,
            input=json.dumps(steps),
            capture_output=True,
            text=True,
            timeout=45,  # below pytest's own timeout, so the message is this one
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the snippet ran for more than 45 s; {HOW}")
    if result.returncode != 0:
        pytest.fail(
            f"{block.where}: the snippet failed (exit {result.returncode}); if it cannot run "
            f"alone, {HOW}\n{result.stderr[-4000:]}",
            pytrace=False,
        )


TYPED = [b for b in BLOCKS if b.typed]


def test_typed_recipes_pass_mypy_strict(tmp_path: Path) -> None:
    """The recipes a typed app copies (marked ``typed``) pass ``mypy --strict`` as written:
    ``app = refetch.mount(app, ...)`` keeps the app's type, the FastAPI form's decorator and
    return type check."""
    assert {b.path for b in TYPED} >= {"docs/server.md"}
    prelude = (ROOT / "tests" / "snippets" / "typed_prelude.py").read_text()
    files = []
    for n, block in enumerate(TYPED):
        path = tmp_path / f"recipe_{n}.py"
        path.write_text(prelude + "\n" + block.source)
        files.append((path, block))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *(str(p) for p, _ in files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout
    for path, block in files:  # name the doc, not the temporary file
        report = report.replace(str(path), block.where + " (after the prelude)")
    assert result.returncode == 0, report
