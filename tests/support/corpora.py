"""Small corpora on disk for the Embeddings pane: notes on four clearly different topics, a CSV with bad rows."""

from __future__ import annotations

import csv
from pathlib import Path

TOPICS = {
    "baking": [
        "Knead the dough for ten minutes until it is smooth and elastic.",
        "Sourdough needs an active starter fed the night before baking.",
        "Let the bread cool on a rack before slicing it.",
        "A hot oven and a tray of water give the loaf a crisp crust.",
        "Proof the shaped loaves in the fridge overnight for more flavour.",
        "Weigh the flour and water instead of using cups.",
        "Brush the pastry with beaten egg so it browns evenly.",
        "Rye flour makes a dense, dark and slightly sour bread.",
    ],
    "astronomy": [
        "Jupiter's four largest moons are visible through small binoculars.",
        "A light year is the distance light travels in one year.",
        "The Andromeda galaxy is on a collision course with the Milky Way.",
        "Saturn's rings are made mostly of ice and rock.",
        "A telescope's aperture decides how faint a star it can show.",
        "The Moon always shows the same face to the Earth.",
        "Neutron stars are the collapsed cores of massive stars.",
        "Meteor showers happen when Earth crosses a comet's debris trail.",
    ],
    "sailing": [
        "Reef the mainsail early when the wind starts to build.",
        "A bowline knot makes a fixed loop that will not slip.",
        "Tacking turns the bow of the boat through the wind.",
        "Check the tide tables before leaving the harbour.",
        "The jib sheet trims the small sail at the front of the boat.",
        "Keep a lookout for lobster pots when sailing close to shore.",
        "Heave to in a squall to let the boat ride out the gusts.",
        "A sailor on a broad reach has the wind over the rear quarter.",
    ],
    "programming": [
        "A unit test checks one small piece of code in isolation.",
        "Use a virtual environment so project dependencies do not clash.",
        "Git lets you branch, commit and merge changes safely.",
        "A race condition appears when two threads share state without a lock.",
        "Profile the program before optimising the slow function.",
        "Type hints make a Python function's contract explicit.",
        "Recursion needs a base case or it never stops.",
        "A linter catches unused imports and undefined names.",
    ],
}


def write_notes_folder(folder: Path) -> Path:
    """One Markdown file per topic, a blank line between notes (each note becomes one passage)."""
    folder.mkdir(parents=True, exist_ok=True)
    for topic, notes in TOPICS.items():
        (folder / f"{topic}.md").write_text("\n\n".join(notes) + "\n", encoding="utf-8")
    return folder


def write_lines_file(path: Path) -> Path:
    path.write_text("\n".join(note for notes in TOPICS.values() for note in notes) + "\n", encoding="utf-8")
    return path


def write_csv_with_bad_rows(path: Path) -> Path:
    """A CSV whose 'text' column has two empty cells and one short row among the notes."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "topic"])
        for number, (topic, note) in enumerate((t, n) for t, notes in TOPICS.items() for n in notes[:3]):
            writer.writerow([number, note, topic])
        writer.writerow([90, "", "empty"])
        writer.writerow([91, "   ", "blank"])
        writer.writerow([92])
    return path
