from workbench.core.models.names import resolve_model_name

IDS = ["smollm2-135m", "mlx-community/Qwen3-0.6B-4bit", "lmstudio:qwen3", "odd:latest"]


def test_an_exact_id_wins() -> None:
    assert resolve_model_name("smollm2-135m", IDS) == "smollm2-135m"
    assert resolve_model_name("lmstudio:qwen3", IDS) == "lmstudio:qwen3"
    assert resolve_model_name("odd:latest", IDS) == "odd:latest"  # an id that itself ends in :latest


def test_a_trailing_latest_is_dropped() -> None:
    assert resolve_model_name("smollm2-135m:latest", IDS) == "smollm2-135m"
    assert resolve_model_name("mlx-community/Qwen3-0.6B-4bit:latest", IDS) == "mlx-community/Qwen3-0.6B-4bit"


def test_other_names_mean_nothing() -> None:
    assert resolve_model_name("smollm2", IDS) is None
    assert resolve_model_name("smollm2-135m:q4", IDS) is None
    assert resolve_model_name(":latest", IDS) is None
    assert resolve_model_name("", IDS) is None
