"""A model's own sampling defaults (its generation_config.json) and the effective settings of a chat with it.

transformers reads ``generation_config.json`` beside a model's weights and samples with the values in it;
we do the same for local MLX models. Remote models have no folder here: their server applies its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.chat.sampling import (
    FROM_USER,
    ResolvedSampling,
    SamplingChoice,
    SamplingLayer,
    resolve_sampling,
    validate_sampling,
)

if TYPE_CHECKING:
    from workbench.core.models.lifecycle import ModelManager
    from workbench.core.models.spec import ModelSpec
    from workbench.core.settings.config import Settings

GENERATION_CONFIG = "generation_config.json"
FROM_MODEL_FILE = f"model ({GENERATION_CONFIG})"
FROM_MODEL_KNOWN = "model (embedded defaults)"
MAX_GENERATION_CONFIG_BYTES = 256 * 1024  # real ones are well under 1 KB
# generation_config.json field -> our setting. max_length counts the prompt too: not ours to map.
GENERATION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_tokens",
}
GREEDY_IGNORES = ("top_p", "top_k", "min_p")

log = logging.getLogger(__name__)


def sampling_from_generation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling values a generation_config.json sets; values we cannot use are left out.

    ``do_sample: false`` means greedy decoding to transformers (temperature and the top-p/k/min-p filters are
    ignored then), so it reads as temperature 0. Without ``do_sample`` the values written are taken as meant:
    most files that name a temperature also say ``do_sample: true``, and the rest were written to be used.
    """
    values: dict[str, Any] = {}
    for theirs, ours in GENERATION_FIELDS.items():
        if config.get(theirs) is None:
            continue
        clean, problems = validate_sampling({ours: config[theirs]})
        if problems:
            log.info("%s: ignoring %s (%s)", GENERATION_CONFIG, theirs, problems[0][1])
        values.update(clean)
    if config.get("do_sample") is False:
        for key in GREEDY_IGNORES:
            values.pop(key, None)
        values["temperature"] = 0.0
    return values


def read_generation_config(folder: Path) -> dict[str, Any] | None:
    """The parsed generation_config.json of a model folder; None when it is missing, too big or not a JSON object."""
    path = Path(folder) / GENERATION_CONFIG
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_GENERATION_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.info("cannot read %s: %s", path, exc)
        return None
    if len(raw) > MAX_GENERATION_CONFIG_BYTES:
        log.info("ignoring %s: larger than %d bytes", path, MAX_GENERATION_CONFIG_BYTES)
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        log.info("ignoring %s: not JSON (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else None


def model_sampling(spec: ModelSpec) -> SamplingLayer | None:
    """A local model's own defaults: its generation_config.json, or for the embedded model imported before
    the import wrote one, the values the import writes now. None when the model sets none (a remote model's
    server applies its own)."""
    from workbench.core.models.backends.remote import KIND as REMOTE
    from workbench.core.models.local import DEFAULT_CHAT_ID, EMBEDDED_CHAT_GENERATION

    if spec.kind == REMOTE or not Path(spec.path).is_absolute():
        return None
    config = read_generation_config(spec.path)
    if config is not None:
        values = sampling_from_generation_config(config)
        return SamplingLayer(FROM_MODEL_FILE, values) if values else None
    if spec.id == DEFAULT_CHAT_ID:
        return SamplingLayer(FROM_MODEL_KNOWN, sampling_from_generation_config(EMBEDDED_CHAT_GENERATION))
    return None


def model_sampling_by_id(manager: ModelManager, model_id: str | None) -> SamplingLayer | None:
    """:func:`model_sampling` of a registered model; None for an unknown id."""
    from workbench.core.models.spec import UnknownModelError

    if model_id is None:
        return None
    try:
        spec = manager.info(model_id).spec
    except UnknownModelError:
        return None
    return model_sampling(spec)


def chat_sampling(
    settings: Settings,
    manager: ModelManager,
    model_id: str | None,
    choice: SamplingChoice | None = None,
    source: str = FROM_USER,
) -> ResolvedSampling:
    """The effective sampling of a chat with ``model_id``: ``choice``'s own values (labelled ``source``), then
    its preset (by default the one config.toml names, if any), then the model's defaults, then the built-in ones.
    """
    from workbench.core.settings.config import presets

    choice = choice if choice is not None else SamplingChoice(settings.chat_preset)
    return resolve_sampling(*choice.layers(presets(settings), source), model_sampling_by_id(manager, model_id))
