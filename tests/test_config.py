from __future__ import annotations

from pathlib import Path

import pytest

from workbench.core.chat.sampling import BUILTIN_PRESETS, SamplingSettings
from workbench.core.settings.config import Settings, load_settings, presets
from workbench.core.settings.toml_text import ConfigIssue, locate_key
from workbench.core.settings.write import default_config_text, save_key_binding, save_preset, save_setting


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "nope.toml") == (Settings(), [])


def test_default_template_is_all_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "config.toml", default_config_text())) == (Settings(), [])


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        'theme = "nord"\n[memory]\nbudget_gb = 8\nbudget_fraction = 0.5\n'
        '[models]\ncontext_length = 8192\nidle_unload_minutes = 0\n[keys]\n"pane.chat" = "3"\n',
    )
    settings, issues = load_settings(path)
    assert issues == []
    assert settings == Settings("nord", 8.0, 0.5, 8192, 0.0, {"pane.chat": "3"})
    assert isinstance(settings.budget_gb, float)


def test_syntax_error_gives_defaults_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'theme = "nord"\n[memory]\nbudget_gb = \n')
    settings, issues = load_settings(path)
    assert settings == Settings()
    [issue] = issues
    assert (issue.file, issue.line, issue.key) == (path, 3, "(syntax)")
    assert str(issue).startswith(f"{path}:3: (syntax): ")


def test_wrong_type_names_file_line_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        '# settings\ntheme = "nord"\n\n[memory]\nbudget_fraction = "half"\n\n'
        "[models]\ncontext_length = 2048\n",
    )
    settings, issues = load_settings(path)
    assert settings.budget_fraction == 0.6
    assert settings.theme == "nord"
    assert settings.context_length == 2048
    [issue] = issues
    assert (issue.file, issue.line, issue.key) == (path, 5, "memory.budget_fraction")
    assert "expected a number" in issue.message and '"half"' in issue.message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("memory.budget_fraction = 1.5", "memory.budget_fraction"),
        ("memory.budget_fraction = 0", "memory.budget_fraction"),
        ("memory.budget_gb = -1", "memory.budget_gb"),
        ("models.context_length = 100", "models.context_length"),
        ("models.context_length = 4096.0", "models.context_length"),
        ("models.context_length = true", "models.context_length"),
        ("models.idle_unload_minutes = -5", "models.idle_unload_minutes"),
        ("models.prompt_cache_gb = -1", "models.prompt_cache_gb"),
        ('models.prompt_cache_gb = "big"', "models.prompt_cache_gb"),
        ("theme = 3", "theme"),
        ('keys."pane.chat" = ""', 'keys."pane.chat"'),
        ("keys = 3", "keys"),
    ],
)
def test_out_of_range_or_wrong_type(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path / "config.toml", f"# top\n{line}\n")
    settings, issues = load_settings(path)
    assert settings == Settings()
    assert [(i.key, i.line) for i in issues] == [(key, 2)]


def test_int_accepted_for_float(tmp_path: Path) -> None:
    settings, issues = load_settings(write(tmp_path / "c.toml", "[models]\nidle_unload_minutes = 5\n"))
    assert issues == []
    assert settings.idle_unload_minutes == 5.0 and isinstance(settings.idle_unload_minutes, float)


def test_unknown_keys_reported_rest_applies(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        'theme = "nord"\ncolour = "red"\n[memory]\nbudget_gib = 4\n[extras]\nx = 1\n',
    )
    settings, issues = load_settings(path)
    assert settings.theme == "nord"
    assert [(i.key, i.line) for i in issues] == [("colour", 2), ("memory.budget_gib", 4), ("extras", 5)]
    assert all(i.message.startswith("unknown setting") for i in issues)
    assert "memory.budget_gb" in issues[1].message  # the suggestion


def test_issue_str_without_line() -> None:
    assert str(ConfigIssue(Path("c.toml"), None, "theme", "bad")) == "c.toml: theme: bad"
    assert str(ConfigIssue(Path("c.toml"), 4, "theme", "bad")) == "c.toml:4: theme: bad"


def test_locate_key() -> None:
    text = (
        "# comment\n"
        'theme = "x"\n'
        "memory.budget_gb = 1\n"
        "[models]  # models\n"
        "context_length = 2\n"
        'doc = """\n'
        "idle_unload_minutes = 3\n"
        '"""\n'
        "[keys]\n"
        '"pane.chat" = "3"\n'
        "'pane.x' = \"a=b\"\n"
    )
    assert locate_key(text, "theme") == 2
    assert locate_key(text, "memory.budget_gb") == 3
    assert locate_key(text, "models") == 4
    assert locate_key(text, "models.context_length") == 5
    assert locate_key(text, "models.idle_unload_minutes") is None  # inside a multi-line string
    assert locate_key(text, 'keys."pane.chat"') == 10
    assert locate_key(text, ("keys", "pane.x")) == 11
    assert locate_key(text, "memory.budget_fraction") is None


COMMENTED = """\
# My settings, hand-written.
theme = "workbench-dark"  # the dark one

[memory]
# keep room for the browser
budget_gb = 6.0
"""


def test_save_setting_keeps_comments(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    save_setting(path, "theme", "nord")
    save_setting(path, "models.context_length", 8192)
    text = path.read_text(encoding="utf-8")
    assert "# My settings, hand-written." in text
    assert "# keep room for the browser" in text
    assert 'theme = "nord"' in text
    settings, issues = load_settings(path)
    assert issues == []
    assert (settings.theme, settings.budget_gb, settings.context_length) == ("nord", 6.0, 8192)
    assert not list(tmp_path.glob("*.tmp"))


def test_save_setting_creates_file_with_header(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "config.toml"
    save_setting(path, "memory.budget_gb", 8.0)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# workbench settings")
    settings, issues = load_settings(path)
    assert issues == []
    assert settings.budget_gb == 8.0


def test_save_setting_none_removes(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    save_setting(path, "memory.budget_gb", None)
    assert load_settings(path)[0].budget_gb is None
    assert "# keep room for the browser" in path.read_text(encoding="utf-8")


def test_save_setting_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ValueError, match="unknown setting"):
        save_setting(path, "memory.nope", 1)
    with pytest.raises(ValueError, match="budget_fraction"):
        save_setting(path, "memory.budget_fraction", 2)
    with pytest.raises(ValueError, match="save_key_binding"):
        save_setting(path, "keys.pane", "3")
    assert not path.exists()


def test_save_key_binding(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    save_key_binding(path, "pane.chat", "3")
    save_key_binding(path, "app.palette", "ctrl+p,f1")
    settings, issues = load_settings(path)
    assert issues == []
    assert settings.keys == {"pane.chat": "3", "app.palette": "ctrl+p,f1"}
    assert "# keep room for the browser" in path.read_text(encoding="utf-8")
    save_key_binding(path, "pane.chat", None)
    assert load_settings(path)[0].keys == {"app.palette": "ctrl+p,f1"}
    with pytest.raises(ValueError):
        save_key_binding(path, "pane.chat", " ")


# --- [chat] -----------------------------------------------------------------------------------------

CHAT = """\
[chat]
system_prompt = "Be brief."
preset = "mine"

# my own
[chat.presets.mine]
temperature = 0.3
max_tokens = 1024

[chat.presets.precise]  # override a builtin
temperature = 0.1
"""


def test_no_preset_is_chosen_unless_config_names_one(tmp_path: Path) -> None:
    assert Settings().chat_preset is None  # so the model's generation_config outranks "balanced"
    settings, issues = load_settings(write(tmp_path / "config.toml", '[chat]\npreset = "balanced"\n'))
    assert (settings.chat_preset, issues) == ("balanced", [])


def test_chat_table(tmp_path: Path) -> None:
    settings, issues = load_settings(write(tmp_path / "config.toml", CHAT))
    assert issues == []
    assert (settings.chat_system_prompt, settings.chat_preset) == ("Be brief.", "mine")
    assert settings.chat_presets == {"mine": {"temperature": 0.3, "max_tokens": 1024}, "precise": {"temperature": 0.1}}


def test_presets_merge_builtins_with_the_users() -> None:
    assert presets(Settings()) == BUILTIN_PRESETS
    mine = {"top_k": 40}
    merged = presets(Settings(chat_presets={"mine": mine, "greedy": {"max_tokens": 9}}))
    assert list(merged) == ["balanced", "precise", "creative", "greedy", "mine"]
    assert merged["mine"] == mine
    assert merged["greedy"] == {"max_tokens": 9}
    assert merged["creative"] == BUILTIN_PRESETS["creative"]


def test_bad_preset_values_name_file_line_key_and_keep_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        '[chat]\npreset = "mine"\n\n[chat.presets.mine]\ntemperature = "hot"\nmax_tokens = 64\ntop_q = 1\n'
        "[chat.presets.x]\nmin_p = 1\n",
    )
    settings, issues = load_settings(path)
    assert settings.chat_preset == "mine"
    assert settings.chat_presets == {"mine": {"max_tokens": 64}, "x": {}}
    assert [(i.file, i.line, i.key) for i in issues] == [
        (path, 5, "chat.presets.mine.temperature"),
        (path, 7, "chat.presets.mine.top_q"),
        (path, 9, "chat.presets.x.min_p"),
    ]
    assert '"hot"' in issues[0].message
    assert "did you mean top_p?" in issues[1].message


def test_bad_preset_shapes(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "[chat]\npresets.a = 3\npresets.b = { top_k = -1, seed = 4 }\n")
    settings, issues = load_settings(path)
    assert settings.chat_presets == {"b": {"seed": 4}}
    # A key inside an inline table has no line of its own: the issue points at the table.
    assert [(i.line, i.key) for i in issues] == [(2, "chat.presets.a"), (3, "chat.presets.b.top_k")]
    settings, issues = load_settings(write(tmp_path / "c2.toml", "[chat]\npresets = 1\n"))
    assert [(i.line, i.key) for i in issues] == [(2, "chat.presets")]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[chat]\npreset = "wild"\n', "chat.preset"),
        ('[chat]\npreset = ""\n', "chat.preset"),
        ("[chat]\nsystem_prompt = 3\n", "chat.system_prompt"),
        ('[chat]\nsystem = "x"\n', "chat.system"),
        ("chat = 3\n", "chat"),
    ],
)
def test_bad_chat_settings(tmp_path: Path, text: str, key: str) -> None:
    settings, issues = load_settings(write(tmp_path / "config.toml", text))
    assert settings == Settings()
    [issue] = issues
    assert (issue.key, issue.line) == (key, 1 if key == "chat" else 2)


def test_unknown_preset_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", '[chat]\npreset = "wild"\n[chat.presets.mine]\ntop_k = 5\n')
    settings, [issue] = load_settings(path)
    assert settings.chat_preset is None  # as if none were named: the model's own defaults apply
    assert issue.message == 'unknown preset "wild" (known: balanced, precise, creative, greedy, mine)'


def test_save_preset_keeps_comments_and_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED + "\n" + CHAT)
    fancy = SamplingSettings(0.0, 1.0, 0.05, 40, 2048, 1.1, 42).to_dict()
    save_preset(path, "mine", fancy)
    save_preset(path, "new-one_2", {"top_p": 0.5, "seed": None})
    save_setting(path, "chat.preset", "new-one_2")
    save_setting(path, "chat.system_prompt", "")
    text = path.read_text(encoding="utf-8")
    assert "# keep room for the browser" in text and "# my own" in text and "# override a builtin" in text
    assert "[chat.presets.new-one_2]" in text
    settings, issues = load_settings(path)
    assert issues == []
    assert settings.chat_presets == {
        "mine": fancy,
        "precise": {"temperature": 0.1},
        "new-one_2": {"top_p": 0.5},
    }
    assert (settings.chat_preset, settings.chat_system_prompt) == ("new-one_2", "")


def test_save_preset_into_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_preset(path, "mine", {"temperature": 0.3})
    save_setting(path, "chat.preset", "mine")
    assert path.read_text(encoding="utf-8").startswith("# workbench settings")
    settings, issues = load_settings(path)
    assert issues == []
    assert settings.chat_presets == {"mine": {"temperature": 0.3}}
    assert settings.chat_preset == "mine"


@pytest.mark.parametrize("name", ["", "my preset", "a.b", 'q"', "ünï"])
def test_save_preset_rejects_odd_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ValueError, match="preset name"):
        save_preset(path, name, {})
    with pytest.raises(ValueError, match="temperature"):
        save_preset(path, "mine", {"temperature": -1})
    with pytest.raises(ValueError, match="save_preset"):
        save_setting(path, "chat.presets.mine", 1)
    with pytest.raises(ValueError, match=r"chat\.preset"):
        save_setting(path, "chat.preset", "")
    assert not path.exists()


def test_serve_table(tmp_path: Path) -> None:
    text = '[serve]\napi_key_env = "WORKBENCH_API_KEY"\nmax_body_mb = 2\nmax_waiting = 4\n'
    path = write(tmp_path / "config.toml", text)
    settings, issues = load_settings(path)
    assert issues == []
    assert (settings.serve_api_key_env, settings.serve_max_body_mb, settings.serve_max_waiting) == (
        "WORKBENCH_API_KEY", 2.0, 4)  # fmt: skip
    defaults = Settings()
    assert (defaults.serve_api_key_env, defaults.serve_max_body_mb, defaults.serve_max_waiting) == ("", 8.0, 32)
    assert "[serve]" in default_config_text() and "# max_waiting = 32" in default_config_text()


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ('api_key_env = "sk-abc123"', "the name of an environment variable"),  # a key, not a variable's name
        ('api_key_env = ""', "the name of an environment variable"),
        ("api_key_env = 3", "the name of an environment variable"),
        ("max_body_mb = 0", "greater than 0 and at most 1024"),
        ("max_body_mb = 5000", "greater than 0 and at most 1024"),
        ('max_body_mb = "8"', "greater than 0 and at most 1024"),
        ("max_waiting = 0", "from 1 to 10000"),
        ("max_waiting = 2.5", "from 1 to 10000"),
        ("max_waitng = 3", "did you mean serve.max_waiting?"),
    ],
)
def test_bad_serve_settings_name_file_line_key_and_keep_the_default(tmp_path: Path, line: str, expect: str) -> None:
    path = write(tmp_path / "config.toml", f"# serve\n[serve]\n{line}\n")
    settings, issues = load_settings(path)
    assert settings == Settings()
    [issue] = issues
    assert issue.line == 3 and issue.key == f"serve.{line.split(' =')[0]}" and expect in issue.message


def test_save_a_serve_setting_keeps_comments(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "# mine\n[serve]\n# the queue\nmax_waiting = 4\n")
    save_setting(path, "serve.max_waiting", 8)
    save_setting(path, "serve.api_key_env", "MY_KEY")
    assert "# mine" in path.read_text() and "# the queue" in path.read_text()
    settings, issues = load_settings(path)
    assert issues == [] and (settings.serve_max_waiting, settings.serve_api_key_env) == (8, "MY_KEY")
    with pytest.raises(ValueError, match="from 1 to 10000"):
        save_setting(path, "serve.max_waiting", 0)


def test_the_prompt_cache_bound_is_read_and_resolved(tmp_path: Path) -> None:
    from workbench.core.models.memory import GB
    from workbench.core.prompt_cache import cache_limit_bytes

    settings, issues = load_settings(write(tmp_path / "c.toml", "[models]\nprompt_cache_gb = 1.5\n"))
    assert issues == [] and settings.prompt_cache_gb == 1.5
    assert cache_limit_bytes(settings.prompt_cache_gb, 16 * GB) == int(1.5 * GB)
    assert cache_limit_bytes(Settings().prompt_cache_gb, 16 * GB) == int(1.6 * GB)  # unset: 10 % of the budget
    assert cache_limit_bytes(0, 16 * GB) == 0  # 0 turns reuse off


def test_engine_idle_exit_minutes(tmp_path: Path) -> None:
    assert Settings().engine_idle_exit_minutes == 30.0 and "# idle_exit_minutes = 30" in default_config_text()
    settings, issues = load_settings(write(tmp_path / "config.toml", "[engine]\nidle_exit_minutes = 0\n"))
    assert issues == [] and settings.engine_idle_exit_minutes == 0.0  # 0 = never
    settings, issues = load_settings(write(tmp_path / "bad.toml", "[engine]\nidle_exit_minutes = -1\n"))
    [issue] = issues
    assert settings.engine_idle_exit_minutes == 30.0 and issue.key == "engine.idle_exit_minutes" and issue.line == 2
    assert "minutes >= 0" in issue.message
