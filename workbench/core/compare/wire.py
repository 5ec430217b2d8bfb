"""A compare turn's records as JSON documents: what the engine's compare routes send and take
(workbench.server.engine_compare) and what a face's RemoteCompareSession rebuilds (workbench.client.compare_session).

A side's events are one document each, ``{"type": ...}``: ``trimmed`` (dropped, prompt_tokens, window), ``reading``
(done, total, cached), ``token`` (text), and last ``finished`` (figures, stopped, finish_reason) or ``failed``
(error). Contenders travel as :meth:`Contender.to_dict` writes them, a plan as ``{"kind", "reason"}``, a reveal as
``{"labels", "first", "second"}``. Both sides use these functions, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.run import ContextTrimmed, Finished, Reading, Token
from workbench.core.chat.sampling import SamplingSettings, validate_sampling
from workbench.core.chat.wire import run_event_document, run_event_from
from workbench.core.compare.run import SIDES, Contender, MemoryPlan, PlanKind, SideFailed
from workbench.core.compare.session import Reveal

SideEventKind = Token | ContextTrimmed | Reading | Finished | SideFailed
CONTENDER_KEYS = frozenset({"model_id", "label", "sampling", "system_prompt"})
MAX_ID_CHARS = 512
MAX_LABEL_CHARS = 512
MAX_SYSTEM_PROMPT_CHARS = 256 * 1024
MAX_REASON_CHARS = 1024


class WireError(ValueError):
    """A document that is not what it should be (a face's mistake, or the engine and the face run other code)."""


def side_event_document(event: SideEventKind) -> dict[str, Any]:
    if (document := run_event_document(event)) is not None:
        return document
    if isinstance(event, Finished):
        return {"type": "finished", "figures": event.figures.to_dict() if event.figures else None,
                "stopped": event.stopped, "finish_reason": event.finish_reason}  # fmt: skip
    return {"type": "failed", "error": event.error}


def side_event_from(document: Any) -> SideEventKind:
    """The side event a document stands for; WireError when it stands for none."""
    try:
        kind = document["type"]
        if (event := run_event_from(document)) is not None:
            return event
        if kind == "finished":
            figures = document.get("figures")
            reason = document.get("finish_reason")
            return Finished(GenerationFigures.from_dict(figures) if figures else None, bool(document["stopped"]),
                            None if reason is None else str(reason))  # fmt: skip
        if kind == "failed":
            return SideFailed(str(document["error"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a malformed side event: {type(exc).__name__}: {exc}") from None
    raise WireError(f"an unknown side event: {str(kind)[:40]!r}")


def contender_from(document: Any, name: str = "contender") -> Contender:
    """A contender from a face's document, every field checked (unknown keys and bad sampling values refused)."""
    if not isinstance(document, dict):
        raise WireError(f'\'{name}\' must be an object: {{"model_id", "label"?, "sampling"?, "system_prompt"?}}')
    if unknown := sorted(set(document) - CONTENDER_KEYS):
        raise WireError(f"'{name}': unknown key(s): {', '.join(repr(k)[:60] for k in unknown[:5])}")
    model_id = document.get("model_id")
    if not isinstance(model_id, str) or not model_id or len(model_id) > MAX_ID_CHARS:
        raise WireError(f"'{name}.model_id' must be a model id (a string of at most {MAX_ID_CHARS} characters)")
    label = document.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise WireError(f"'{name}.label' must be a string of at most {MAX_LABEL_CHARS} characters")
    system_prompt = document.get("system_prompt", "")
    if not isinstance(system_prompt, str) or len(system_prompt) > MAX_SYSTEM_PROMPT_CHARS:
        raise WireError(f"'{name}.system_prompt' must be a string of at most {MAX_SYSTEM_PROMPT_CHARS} characters")
    sampling = document.get("sampling", {})
    if not isinstance(sampling, dict):
        raise WireError(f"'{name}.sampling' must be an object of sampling settings")
    clean, problems = validate_sampling(sampling)
    if problems:
        raise WireError(f"'{name}.sampling': " + "; ".join(f"{str(k)[:40]}: {why}" for k, why in problems[:5]))
    return Contender(model_id, label or model_id, SamplingSettings(**clean), system_prompt)


def plan_document(plan: MemoryPlan) -> dict[str, Any]:
    return {"kind": plan.kind.value, "reason": plan.reason}


def plan_from(document: Any) -> MemoryPlan:
    if not isinstance(document, dict) or set(document) != {"kind", "reason"}:
        raise WireError('\'plan\' must be {"kind": "together" | "sequential", "reason": "..."}')
    kind, reason = document["kind"], document["reason"]
    if kind not in {k.value for k in PlanKind}:
        raise WireError('\'plan.kind\' must be "together" or "sequential"')
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise WireError(f"'plan.reason' must be a string of at most {MAX_REASON_CHARS} characters")
    return MemoryPlan(PlanKind(kind), reason)


def reveal_document(reveal: Reveal) -> dict[str, Any]:
    return {"labels": dict(reveal.labels), "first": reveal.first, "second": reveal.second}


def reveal_from(document: Any) -> Reveal:
    try:
        labels = {side: str(document["labels"][side]) for side in SIDES}
        return Reveal(labels, str(document["first"]), str(document["second"]))
    except (KeyError, TypeError) as exc:
        raise WireError(f"a malformed reveal: {type(exc).__name__}: {exc}") from None
