"""The one formatter of a generation's figures: the same words on screen, in the CLI and in both exports."""

from __future__ import annotations

from workbench.core.chat.figures import GenerationFigures, format_figures
from workbench.core.chat.run import GenerationFigures as FromRun

FULL = GenerationFigures(ttft_s=0.31, prompt_tokens=20, prompt_tps=150.0, generation_tokens=12, generation_tps=7.4,
                         peak_memory_gb=0.12)  # fmt: skip


def test_a_full_set_reads_as_one_line() -> None:
    line = "first token 0.31 s · prompt 20 tok @ 150.0 tok/s · 12 tok @ 7.4 tok/s · peak 0.12 GB"
    assert FULL.summary() == format_figures(FULL.to_dict()) == line
    assert FromRun is GenerationFigures  # chat.run re-exports it


def test_missing_figures_are_left_out() -> None:
    assert format_figures({"generation_tokens": 12, "generation_tps": 7.4}) == "12 tok @ 7.4 tok/s"
    assert format_figures({"prompt_tokens": 20, "peak_memory_gb": 1.5}) == "prompt 20 tok · peak 1.50 GB"
    assert format_figures({"prompt_tps": 150.0, "generation_tokens": 3}) == "prompt 150.0 tok/s · 3 tok"
    assert format_figures({"generation_tps": True, "note": "x"}) == ""  # not numbers
    assert format_figures(None) == format_figures({}) == ""


def test_the_cached_part_of_the_prompt_is_named() -> None:
    figures = GenerationFigures(ttft_s=0.5, prompt_tokens=440, prompt_tps=20.0, generation_tokens=8,
                                generation_tps=7.0, peak_memory_gb=0.2, cached_tokens=420)  # fmt: skip
    assert "prompt 440 tok, 420 cached @ 20.0 tok/s" in figures.summary()
    assert GenerationFigures.from_dict(figures.to_dict()) == figures
    older = {key: value for key, value in figures.to_dict().items() if key != "cached_tokens"}  # stored before
    assert GenerationFigures.from_dict(older).cached_tokens == 0
    assert "cached" not in GenerationFigures.from_dict(older).summary()


def test_a_single_token_has_no_speed() -> None:
    """A stopped answer's one token was once shown "1 tok @ 16622.3 tok/s": a rate over no interval."""
    assert format_figures({"generation_tokens": 1, "generation_tps": 0.0}) == "1 tok"
