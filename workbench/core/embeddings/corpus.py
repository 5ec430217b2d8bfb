"""A corpus for the Embeddings pane and `workbench embed`: passages (id, text, source) read from a text or Markdown
file (one passage a line), a folder of them (paragraphs, long ones cut at sentence ends), a CSV column or a JSONL
field. Anything wrong with a row or a file becomes a line in ``Corpus.problems``, never an exception.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
CSV_SNIFF_ROWS = 20
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_BLANK_LINE = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    source: str


@dataclass
class Corpus:
    passages: list[Passage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [passage.text for passage in self.passages]


def load_corpus(path: Path, column: str | None = None, max_chars: int = 800) -> Corpus:
    """Read a corpus; anything wrong with a row or a file becomes a line in `problems`, never an exception."""
    corpus = Corpus()
    if not path.exists():
        corpus.problems.append(f"{path}: no such file or folder")
    elif path.is_dir():
        _load_folder(path, max_chars, corpus)
    else:
        suffix = path.suffix.lower()
        try:
            if suffix in TEXT_SUFFIXES:
                _load_lines(path, corpus)
            elif suffix == ".csv":
                _load_csv(path, column, corpus)
            elif suffix == ".jsonl":
                _load_jsonl(path, column or "text", corpus)
            else:
                corpus.problems.append(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}")
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            corpus.problems.append(f"{path.name}: cannot read ({exc})")
    return corpus


def _load_lines(path: Path, corpus: Corpus) -> None:
    source = path.name
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if text:
            corpus.passages.append(Passage(id=f"{source}:{number}", text=text, source=source))


def _load_folder(folder: Path, max_chars: int, corpus: Corpus) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        corpus.problems.append(f"{folder}: no .txt or .md files")
    for file in files:
        source = file.relative_to(folder).as_posix()
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            corpus.problems.append(f"{source}: cannot read ({exc})")
            continue
        for index, text in enumerate(split_passages(content, max_chars)):
            corpus.passages.append(Passage(id=f"{source}#{index}", text=text, source=source))


def split_passages(content: str, max_chars: int = 800) -> list[str]:
    """Paragraphs (split at blank lines), long ones cut at sentence ends into pieces of at most max_chars."""
    passages: list[str] = []
    for paragraph in _BLANK_LINE.split(content):
        text = " ".join(paragraph.split())
        if text:
            passages.extend(_cut(text, max_chars))
    return passages


def _cut(text: str, max_chars: int) -> Iterator[str]:
    if len(text) <= max_chars:
        yield text
        return
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for piece in _hard_cut(sentence, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                yield current
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        yield current


def _hard_cut(sentence: str, max_chars: int) -> Iterator[str]:
    """A sentence longer than max_chars is cut at word boundaries (or mid-word as a last resort)."""
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        yield sentence[:cut].rstrip()
        sentence = sentence[cut:].lstrip()
    if sentence:
        yield sentence


def _load_csv(path: Path, column: str | None, corpus: Corpus) -> None:
    source = path.name
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            corpus.problems.append(f"{source}: empty file")
            return
        rows: list[tuple[int, list[str]]] = [(reader.line_num, row) for row in reader]
    if column is None:
        column = _first_text_column(header, [row for _, row in rows[:CSV_SNIFF_ROWS]])
        if column is None:
            corpus.problems.append(f"{source}: no text column found")
            return
    if column not in header:
        corpus.problems.append(f"{source}: no column {column!r} (columns: {', '.join(header)})")
        return
    position = header.index(column)
    for line, row in rows:
        if not row:
            continue  # a blank line is not a row
        if position >= len(row):
            corpus.problems.append(f"{source} line {line}: missing column {column!r}")
            continue
        text = row[position].strip()
        if not text:
            corpus.problems.append(f"{source} line {line}: empty {column!r}")
            continue
        corpus.passages.append(Passage(id=f"{source}:{line}", text=text, source=source))


def _first_text_column(header: list[str], sample: list[list[str]]) -> str | None:
    for position, name in enumerate(header):
        values = [row[position].strip() for row in sample if position < len(row) and row[position].strip()]
        if values and not all(_is_number(value) for value in values):
            return name
    return None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _load_jsonl(path: Path, key: str, corpus: Corpus) -> None:
    source = path.name
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            corpus.problems.append(f"{source} line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            corpus.problems.append(f"{source} line {number}: not a JSON object")
            continue
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            corpus.problems.append(f"{source} line {number}: no text in field {key!r}")
            continue
        corpus.passages.append(Passage(id=f"{source}:{number}", text=value.strip(), source=source))
