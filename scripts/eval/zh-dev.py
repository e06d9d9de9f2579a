#!/usr/bin/env python3
"""Builds the Chinese retrieval dev set (BEIR layout) from Debian Reference (zh-CN).

    python3 scripts/eval/zh-dev.py OUT_DIR [--deb PATH]

Without --deb, `apt-get download debian-reference-zh-cn=2.100` fetches the package into a
temporary folder. The .deb must match the SHA-256 below; anything else is refused, because
the committed relevance judgements name sections of exactly this version.

Writes into OUT_DIR:
  corpus.jsonl       one document per section of the manual (produced here, never committed:
                     the manual is GPL-2+)
  queries-dev.jsonl  copied from local-agent/benches/data/zh-dev/ (the project's own questions)
  qrels-dev.tsv      copied from the same folder (the project's own judgements)
and checks that every judged corpus id exists in the corpus.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import io
import json
import lzma
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "debian-reference-zh-cn"
VERSION = "2.100"
DEB_NAME = f"{PACKAGE}_{VERSION}_all.deb"
DEB_SHA256 = "6d2d8d9a646397e28b04cdff23d2e4374101ebf9be348e35961af62c8a2d0977"
HTML_DIR = "usr/share/debian-reference/"
# Reading order of the manual. index.zh-cn.html is left out: it holds only the book's title
# page, the table of contents and the list of tables.
HTML_FILES = ["pr01"] + [f"ch{n:02d}" for n in range(1, 13)] + ["apa"]
MIN_CHARS = 80  # sections with fewer non-space characters of their own are dropped

DATA_DIR = Path(__file__).resolve().parents[2] / "local-agent" / "benches" / "data" / "zh-dev"
QUERIES = "queries-dev.jsonl"
QRELS = "qrels-dev.tsv"
QRELS_HEADER = "query-id\tcorpus-id\tscore"


def fail(message: str) -> None:
    print(f"zh-dev: error: {message}", file=sys.stderr)
    sys.exit(1)


# --- the package ---------------------------------------------------------------------------


def download(folder: Path) -> Path:
    """Fetches the pinned .deb with apt into `folder`."""
    # As root, apt warns that the download runs unsandboxed (its `_apt` user cannot write to a
    # private temporary folder); the file is checked against the pinned SHA-256 anyway.
    command = ["apt-get", "download", f"{PACKAGE}={VERSION}"]
    try:
        subprocess.run(command, cwd=folder, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        fail(
            f"`{' '.join(command)}` failed ({error}). Run `apt-get update` first, or fetch "
            f"{DEB_NAME} yourself and pass it with --deb."
        )
    deb = folder / DEB_NAME
    if not deb.is_file():
        fail(f"apt-get download did not leave {DEB_NAME} in {folder}")
    return deb


def check_sha256(deb: Path) -> bytes:
    data = deb.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != DEB_SHA256:
        fail(
            f"{deb} has SHA-256 {digest}, expected {DEB_SHA256} ({DEB_NAME}). "
            "Refusing to build: the relevance judgements are tied to this exact version."
        )
    return data


def ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix `ar` archive (the .deb container)."""
    if not data.startswith(b"!<arch>\n"):
        fail("not an ar archive (.deb)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def html_pages(deb_bytes: bytes) -> dict[str, str]:
    """The manual's zh-CN HTML pages, by stem (`ch02`, ...)."""
    members = ar_members(deb_bytes)
    names = [n for n in members if n.startswith("data.tar")]
    if not names:
        fail("no data.tar.* member in the .deb")
    raw = members[names[0]]
    if names[0].endswith(".zst"):
        fail("data.tar.zst is not readable with the standard library; this is not the pinned .deb")
    if names[0].endswith(".xz"):
        raw = lzma.decompress(raw)
    pages = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            path = member.name.removeprefix("./")
            if path.startswith(HTML_DIR) and path.endswith(".zh-cn.html"):
                stem = path[len(HTML_DIR) :].removesuffix(".zh-cn.html")
                pages[stem] = tar.extractfile(member).read().decode("utf-8")
    missing = [stem for stem in HTML_FILES if stem not in pages]
    if missing:
        fail(f"pages missing from the .deb: {missing}")
    return pages


# --- HTML to sections ----------------------------------------------------------------------

HEADINGS = {"h1", "h2", "h3", "h4"}
BLOCKS = {
    "p", "div", "pre", "br", "tr", "table", "li", "dt", "dd", "dl", "ul", "ol",
    "blockquote", "hr", "thead", "tbody",
} | HEADINGS
SKIPPED_DIVS = {"navheader", "navfooter", "toc", "footnotes", "list-of-tables"}
VOID = {"br", "hr", "img", "col", "meta", "link"}


class Section:
    def __init__(self, page: str, level: int, anchor: str | None, heading: str):
        self.page, self.level, self.anchor, self.heading = page, level, anchor, heading
        self.parts: list[tuple[str, str]] = []  # ("text" | "pre" | "break", content)


class Splitter(html.parser.HTMLParser):
    """Cuts a DocBook XHTML page into sections at every h1-h4 title.

    A section's own text runs from its heading to the next heading of any level: DocBook puts
    a section's body before its subsections, so nothing of a parent follows a child.
    """

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.sections: list[Section] = []
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, starts a skipped part)
        self.skip = 0  # depth of skipped parts we are inside
        self.pre = 0
        self.heading: list[str] | None = None
        self.heading_level = 0
        self.heading_anchor: str | None = None
        self.row_has_text = False  # the current table row has had text
        self.cell_pending = False  # a new cell began after text: separate it

    # The page is XHTML: `<a id="x"/>` is self-closing and must not stay open.
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag in VOID:
            if not self.skip and tag in ("br", "hr"):
                self.emit("break", "")
            return
        skipping = tag in ("head", "script", "style") or (
            (tag == "div" and classes & SKIPPED_DIVS) or (tag == "sup" and "footnote" in classes)
        )
        self.stack.append((tag, skipping))
        if skipping:
            self.skip += 1
        if self.skip:
            return
        if tag in HEADINGS and "title" in classes:
            self.heading, self.heading_level, self.heading_anchor = [], int(tag[1]), None
            return
        if self.heading is not None:
            if tag == "a" and attrs.get("id") and self.heading_anchor is None:
                self.heading_anchor = attrs["id"]
            return
        if tag == "pre":
            self.pre += 1
        if tag == "tr":
            self.row_has_text, self.cell_pending = False, False
        if tag in ("td", "th"):
            # Cells are joined with " | " once the row has text, so that empty cells (the
            # icon column of a tip or a note) leave no stray separator.
            self.cell_pending = self.row_has_text
        if tag in BLOCKS:
            self.emit("break", "")

    def handle_endtag(self, tag):
        # Pop up to the matching open element (the XHTML is well formed, but be lenient).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, skipping in self.stack[i:]:
                    if skipping:
                        self.skip -= 1
                del self.stack[i:]
                break
        else:
            return
        if self.skip:
            return
        if tag in HEADINGS and self.heading is not None:
            text = normalise_inline(self.heading).strip()
            self.sections.append(Section(self.page, self.heading_level, self.heading_anchor, text))
            self.heading = None
            return
        if tag == "pre":
            self.pre -= 1
        if tag in BLOCKS:
            self.emit("break", "")

    def handle_data(self, data):
        if self.skip:
            return
        if self.heading is not None:
            self.heading.append(data)
            return
        if data.strip():
            if self.cell_pending:
                self.emit("text", " | ")
                self.cell_pending = False
            self.row_has_text = True
        self.emit("pre" if self.pre else "text", data)

    def emit(self, kind: str, text: str):
        if self.sections and self.heading is None:
            self.sections[-1].parts.append((kind, text))


CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f\u201c\u201d\u2018\u2019]")


def normalise_inline(pieces: list[str]) -> str:
    """Joins running text the way a reader sees it.

    The translators wrapped lines inside Chinese sentences; a line break between two CJK
    characters is dropped rather than turned into a space, which would split words.
    """
    text = "".join(pieces)

    def space(match: re.Match) -> str:
        run, start, end = match.group(0), match.start(), match.end()
        if "\n" in run and 0 < start and end < len(text):
            if CJK.match(text[start - 1]) and CJK.match(text[end]):
                return ""
        return " "

    return re.sub(r"\s+", space, text)


def section_text(parts: list[tuple[str, str]]) -> str:
    """Plain text: paragraphs on their own lines, code blocks line by line, spaces collapsed."""
    lines: list[str] = []
    inline: list[str] = []

    def flush():
        if inline:
            line = normalise_inline(inline).strip()
            if line:
                lines.append(line)
            inline.clear()

    pre: list[str] = []
    for kind, content in parts + [("break", "")]:
        if kind == "pre":
            flush()
            pre.append(content)
            continue
        if pre:
            for line in "".join(pre).split("\n"):
                line = line.rstrip()
                if line.strip():
                    lines.append(line)
            pre.clear()
        if kind == "break":
            flush()
        else:
            inline.append(content)
    return "\n".join(lines)


NUMBER = re.compile(r"^(第\s*\d+\s*章|附录\s+[A-Z]\.|[A-Z]?(\.?\d+)+\.|[A-Z]\.\d+(\.\d+)*\.)\s*")


def clean_title(heading: str) -> str:
    """Drops the section number (`2.3.1.`, `第 2 章`, `A.1.`); the title is the heading's words."""
    return NUMBER.sub("", heading).strip()


def slug(page: str, heading: str) -> str:
    """A fallback id (`ch09-9-2-1`) from the section number, else from a hash of the heading."""
    number = re.match(r"^(?:第\s*(\d+)\s*章|附录\s+([A-Z])\.|([A-Z0-9.]+)\.)", heading)
    if number:
        return f"{page}-" + "-".join(filter(None, re.split(r"[.]", next(g for g in number.groups() if g))))
    return f"{page}-" + hashlib.sha1(heading.encode()).hexdigest()[:10]


def build_corpus(pages: dict[str, str]) -> tuple[list[dict], dict]:
    documents, seen = [], set()
    stats = {"sections": 0, "dropped": 0, "repaired_ids": 0, "fallback_ids": 0, "levels": {}}
    for page in HTML_FILES:
        splitter = Splitter(page)
        splitter.feed(pages[page])
        splitter.close()
        for section in splitter.sections:
            stats["sections"] += 1
            text = section_text(section.parts)
            if len(re.sub(r"\s", "", text)) < MIN_CHARS:
                stats["dropped"] += 1
                continue
            # The id is the heading's anchor; one anchor of 2.100 has a space in it
            # (`_customizing_vim_with internal_features`), so unsafe characters become `_`.
            doc_id = re.sub(r"[^A-Za-z0-9_.-]", "_", section.anchor or "")
            if doc_id != (section.anchor or ""):
                stats["repaired_ids"] += 1
            if not doc_id.strip("_"):
                doc_id = slug(page, section.heading)
                stats["fallback_ids"] += 1
            if doc_id in seen:
                fail(f"duplicate document id {doc_id} ({page}: {section.heading})")
            seen.add(doc_id)
            level = f"h{section.level}"
            stats["levels"][level] = stats["levels"].get(level, 0) + 1
            documents.append({"_id": doc_id, "title": clean_title(section.heading), "text": text})
    return documents, stats


# --- the committed questions and judgements -------------------------------------------------


def load_judgements(data_dir: Path, corpus_ids: set[str]) -> tuple[list[dict], list[tuple[str, str, int]]]:
    queries_path, qrels_path = data_dir / QUERIES, data_dir / QRELS
    for path in (queries_path, qrels_path):
        if not path.is_file():
            fail(f"missing {path}")
    queries = []
    for n, line in enumerate(queries_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            query = json.loads(line)
        except json.JSONDecodeError as error:
            fail(f"{queries_path}:{n}: {error}")
        if not query.get("_id") or not query.get("text"):
            fail(f"{queries_path}:{n}: needs _id and text")
        queries.append(query)
    query_ids = [q["_id"] for q in queries]
    if len(set(query_ids)) != len(query_ids):
        fail(f"{queries_path}: duplicate query ids")

    lines = qrels_path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != QRELS_HEADER:
        fail(f"{qrels_path}: the first line must be {QRELS_HEADER!r}")
    qrels, pairs, problems = [], set(), []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or fields[2] not in ("1", "2"):
            problems.append(f"line {n}: want query-id<TAB>corpus-id<TAB>1|2, got {line!r}")
            continue
        query_id, doc_id, score = fields[0], fields[1], int(fields[2])
        if query_id not in query_ids:
            problems.append(f"line {n}: unknown query {query_id}")
        if doc_id not in corpus_ids:
            problems.append(f"line {n}: corpus id {doc_id} is not in the corpus")
        if (query_id, doc_id) in pairs:
            problems.append(f"line {n}: {query_id} / {doc_id} judged twice")
        pairs.add((query_id, doc_id))
        qrels.append((query_id, doc_id, score))
    judged = {q for q, _, _ in qrels}
    for query_id in query_ids:
        if query_id not in judged:
            problems.append(f"query {query_id} has no judgements")
        elif not any(q == query_id and s == 2 for q, _, s in qrels):
            problems.append(f"query {query_id} has no document judged 2")
    if problems:
        fail(f"{qrels_path} does not match the corpus:\n  " + "\n  ".join(problems))
    return queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write corpus.jsonl, queries-dev.jsonl, qrels-dev.tsv")
    parser.add_argument("--deb", type=Path, help=f"a local {DEB_NAME} (default: apt-get download)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of the committed queries and qrels")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zh-dev-") as temp:
        deb = args.deb if args.deb else download(Path(temp))
        if not deb.is_file():
            fail(f"no such file: {deb}")
        deb_bytes = check_sha256(deb)
    documents, stats = build_corpus(html_pages(deb_bytes))
    queries, qrels = load_judgements(args.data, {d["_id"] for d in documents})

    args.out_dir.mkdir(parents=True, exist_ok=True)
    corpus_path = args.out_dir / "corpus.jsonl"
    with open(corpus_path, "w", encoding="utf-8", newline="\n") as out:
        for document in documents:
            out.write(json.dumps(document, ensure_ascii=False) + "\n")
    shutil.copyfile(args.data / QUERIES, args.out_dir / QUERIES)
    shutil.copyfile(args.data / QRELS, args.out_dir / QRELS)

    scores = {1: 0, 2: 0}
    for _, _, score in qrels:
        scores[score] += 1
    per_query = {}
    for query_id, _, _ in qrels:
        per_query[query_id] = per_query.get(query_id, 0) + 1
    counts = sorted(per_query.values())
    levels = ", ".join(f"{k} {v}" for k, v in sorted(stats["levels"].items()))
    digest = hashlib.sha256(corpus_path.read_bytes()).hexdigest()
    print(f"zh-dev: {DEB_NAME} (sha256 ok) -> {args.out_dir}")
    print(
        f"  documents:  {len(documents)} of {stats['sections']} sections "
        f"({stats['dropped']} under {MIN_CHARS} characters dropped; {levels}; "
        f"ids: {stats['repaired_ids']} repaired, {stats['fallback_ids']} slugs)"
    )
    print(f"  queries:    {len(queries)}")
    print(
        f"  judgements: {len(qrels)} (score 2: {scores[2]}, score 1: {scores[1]}; "
        f"per query {counts[0]}-{counts[-1]}, median {counts[len(counts) // 2]})"
    )
    print(f"  corpus.jsonl sha256 {digest}")


if __name__ == "__main__":
    main()
