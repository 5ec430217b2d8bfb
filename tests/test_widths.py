"""The pure fitting functions: names shortened with their variant kept, columns dropped least useful first."""

from __future__ import annotations

import pytest

from workbench.core.hub.curated import CatalogEntry, entry_matches
from workbench.ui.widths import Column, fit_columns, shorten_middle, shorten_repo_id

DISTILLS = ("mlx-community/DeepSeek-R1-Distill-Qwen-1.5B-4bit", "mlx-community/DeepSeek-R1-Distill-Qwen-7B-4bit")


@pytest.mark.parametrize("width", [12, 16, 20, 26, 30, 36, 40])
def test_two_distill_variants_read_differently_at_any_width(width: int) -> None:
    short = [shorten_repo_id(name, width) for name in DISTILLS]
    assert short[0] != short[1]
    assert all(len(s) <= width for s in short)
    assert short[0].endswith("4bit") and short[1].endswith("4bit")


def test_the_org_goes_first_then_the_middle_of_the_name() -> None:
    name = "mlx-community/SmolLM2-135M-Instruct-4bit"
    assert shorten_repo_id(name, 60) == name
    assert shorten_repo_id(name, 34) == "mlx-co…/SmolLM2-135M-Instruct-4bit"
    assert shorten_repo_id(name, 28) == "…/SmolLM2-135M-Instruct-4bit"
    assert shorten_repo_id(name, 20) == "…/SmolL…nstruct-4bit"
    assert shorten_middle("abcdefghij", 7) == "ab…ghij"
    assert shorten_middle("abc", 0) == ""


def test_narrow_tables_drop_the_highest_drop_first_and_the_name_takes_the_rest() -> None:
    columns = [Column("Model", 40), Column("Fit", 4), Column("Likes", 5, drop=2), Column("Updated", 10, drop=3)]
    assert fit_columns(columns, 200, "Model", 30) == (["Model", "Fit", "Likes", "Updated"], 40)
    keys, name = fit_columns(columns, 50, "Model", 30)
    assert keys == ["Model", "Fit", "Likes"] and name == 50 - 2 - 6 - 7
    keys, name = fit_columns(columns, 30, "Model", 30)
    assert keys == ["Model", "Fit"] and name == 22  # nothing more to drop: the name gets what is left


def test_curated_entries_follow_task_author_and_text() -> None:
    chat = CatalogEntry("mlx-community/Qwen2.5-3B-Instruct-4bit", "Qwen 3B", "chat", "3B", "4-bit", 1.7, 2.1)
    embed = CatalogEntry("BAAI/bge-small-en-v1.5", "BGE small", "embedding", "33M", "fp32", 0.1, 0.2)
    assert entry_matches(chat, "", None, None, True) and entry_matches(embed, "", None, None, True)
    assert not entry_matches(chat, "", "feature-extraction", None, True)
    assert entry_matches(embed, "", "feature-extraction", None, True)
    assert not entry_matches(embed, "", "feature-extraction", "Qwen", True)
    assert entry_matches(chat, "", "text-generation", "MLX-Community", True)
    assert not entry_matches(chat, "", "image-text-to-text", None, False)
    assert entry_matches(chat, "qwen 3b", None, None, True) and not entry_matches(embed, "bge", None, None, True)
    assert entry_matches(embed, "bge", None, None, False)
