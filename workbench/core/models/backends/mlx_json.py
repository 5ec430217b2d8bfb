"""Constrained JSON decoding for MLX models with llguidance: a logits processor for mlx-lm that lets through only the
tokens that keep the answer a valid prefix of JSON matching the schema, and only the EOS tokens once it is complete.

The model's tokenizer is converted for llguidance once per loaded model and width of its logits (~0.3 s), kept on
the loaded model; each answer gets its own matcher. The mask is applied with plain mx ops, which work on the CPU
backend and on Metal (llguidance's own mlx helper is a Metal kernel). Everything here runs on the inference thread.
"""

from __future__ import annotations

import json
import math
from typing import Any

from workbench.core.chat.output import OutputRules

# Compact JSON: whitespace between tokens is never needed, and a small model given the freedom can loop on it.
COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class ConstraintError(RuntimeError):
    """The constraint cannot go on (the grammar failed on this model's tokenizer); the message says why."""


def guidance_tokenizer(loaded: Any, vocab_size: int) -> Any:
    """The llguidance tokenizer of ``loaded`` (``mlx_lm.LoadedLanguageModel``) for logits ``vocab_size`` wide, with
    every EOS id of the model; converted once and kept on ``loaded``."""
    import llguidance.hf

    kept: dict[int, Any] = loaded.guidance_tokenizers
    if vocab_size not in kept:
        wrapper = loaded.tokenizer
        hf_tokenizer = getattr(wrapper, "_tokenizer", wrapper)  # mlx-lm's TokenizerWrapper holds the HF tokenizer
        eos = sorted({int(i) for i in getattr(wrapper, "eos_token_ids", None) or [wrapper.eos_token_id]})
        try:
            kept[vocab_size] = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos)
        except Exception as exc:  # a slow (non-Rust) tokenizer, or one larger than the logits
            raise ConstraintError(f"this model's tokenizer cannot be used for JSON output: {exc}") from exc
    return kept[vocab_size]


def grammar_for(rules: OutputRules) -> str:
    from llguidance import LLMatcher

    schema = rules.schema
    if schema is None:
        raise ValueError("the rules do not ask for JSON")
    return LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=COMPILE_OPTIONS)  # type: ignore[arg-type]


class JsonLogitsProcessor:
    """An mlx-lm logits processor (``processor(tokens, logits) -> logits``) for one answer.

    mlx-lm calls it once for the first token (``tokens`` ends with the prompt), then once per sampled token, whose id
    is the last of ``tokens``: that token is fed to the matcher, then the next token's mask is computed. The model's
    forward pass for the next token is started before, so that the mask is computed while the model runs. Once the
    JSON is complete the matcher stops and only the EOS tokens are let through (mlx-lm ends the answer on one)."""

    def __init__(self, loaded: Any, rules: OutputRules) -> None:
        self.loaded = loaded
        self.grammar = grammar_for(rules)
        self.matcher: Any = None
        self._mask: Any = None
        self._only_eos: Any = None

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self.matcher is None:
            self._start(int(logits.shape[-1]))
        else:
            mx.async_eval(logits)  # the model computes while the matcher works
            if not self.matcher.is_stopped():
                self.matcher.consume_token(int(tokens[-1].item()))
        if self.matcher.is_error():
            raise ConstraintError(f"the JSON constraint failed: {self.matcher.get_error()}")
        allowed = self._only_eos if self.matcher.is_stopped() else self._allowed(int(logits.shape[-1]))
        return mx.where(allowed, logits, mx.array(-math.inf, dtype=logits.dtype))

    def _start(self, vocab_size: int) -> None:
        import mlx.core as mx
        import numpy as np
        from llguidance import LLMatcher

        tokenizer = guidance_tokenizer(self.loaded, vocab_size)
        self.matcher = LLMatcher(tokenizer, self.grammar, log_level=0)
        if self.matcher.is_error():
            raise ConstraintError(f"the JSON schema cannot be used with this model: {self.matcher.get_error()}")
        self._mask = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        only_eos = np.zeros(vocab_size, dtype=np.bool_)
        only_eos[[i for i in tokenizer.eos_tokens if i < vocab_size]] = True
        self._only_eos = mx.array(only_eos)

    def _allowed(self, vocab_size: int) -> Any:
        import mlx.core as mx
        import numpy as np

        mask = self._mask
        self.matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[:vocab_size]
        return mx.array(bits.astype(np.bool_))


def json_processor(loaded: Any, rules: OutputRules | None) -> JsonLogitsProcessor | None:
    """The processor that constrains an answer to the JSON ``rules`` ask for, or None when they ask for none."""
    if rules is None or not rules.constrained:
        return None
    return JsonLogitsProcessor(loaded, rules)
