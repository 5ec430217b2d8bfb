"""The `workbench` command line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.engines import stop_engine_of
from tests.support.fake_openai import fake_openai
from tests.test_local_models import add_snapshot, folder_files, safetensors_bytes
from workbench.cli import import_gguf
from workbench.cli import main as cli
from workbench.cli.common import ProgressBar
from workbench.core.hub import cache as hf_cache
from workbench.core.models.local import DEFAULT_CHAT_ID, DEFAULT_EMBEDDER_ID
from workbench.core.models.memory import GB
from workbench.core.settings.paths import AppPaths


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_import_gguf_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    result = run_cli(tmp_path / "home", "import-gguf", str(bogus))
    assert result.returncode == 1
    assert "is not a GGUF file" in result.stderr
    assert "Traceback" not in result.stderr
    models = tmp_path / "home" / "data" / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_import_gguf_help_and_bad_bits(tmp_path: Path) -> None:
    assert "--bits" in run_cli(tmp_path, "import-gguf", "--help").stdout
    assert run_cli(tmp_path, "import-gguf", "x.gguf", "--bits", "3").returncode == 2


def test_import_gguf_name_outside_the_models_folder_is_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    """--name /some/dir --force used to delete /some/dir and write the model there."""
    from workbench.core.models.local import smollm2_gguf

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = run_cli(tmp_path / "home", "import-gguf", str(smollm2_gguf()), "--name", str(precious), "--force")
    assert result.returncode == 2, result.stderr
    assert "--name" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in precious.iterdir()] == ["notes.txt"] and (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".", "", ".hidden", "x\\y", "sub/../x", "a..b",
                                  "nul\x00byte", "endpoint:model", "x" * 200])  # fmt: skip
def test_import_gguf_name_is_a_plain_name(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    assert run(capsys, "import-gguf", str(bogus), "--name", name, "--force").code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "notes.gguf"]


def test_import_gguf_accepts_plain_names_and_refuses_a_linked_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = AppPaths.under(tmp_path / "home")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    plain = run(capsys, "import-gguf", str(bogus), "--name", "My_model-1.5+q4", "--force")
    assert plain.code == 1 and "is not a GGUF file" in plain.err  # the name passed; the file did not
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    linked = run(capsys, "import-gguf", str(bogus), "--name", "linked", "--force")
    assert linked.code == 2 and "is a link" in linked.err and elsewhere.is_dir()


def test_import_gguf_default_name_comes_from_the_file_name() -> None:
    assert import_gguf.default_import_name(Path("/x/SmolLM2-135M.Q4_1.gguf"), 4) == "SmolLM2-135M.Q4_1-4bit"
    assert import_gguf.default_import_name(Path("/x/my model (v2).gguf"), 16) == "my-model-v2-f16"
    assert import_gguf.default_import_name(Path("/x/...gguf"), 8) == "model-8bit"


# --- config mistakes and the log file ------------------------------------------------------------------------------


def test_a_verb_says_config_mistakes_once_on_stderr(tmp_path: Path) -> None:
    """They went to the log file only; the TUI shows them, a script saw nothing."""
    paths = AppPaths.under(tmp_path / "home")
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text("[memory]\nbudget_gb = 4\n\n[chat]\ntemprature = 0.3\n")
    try:
        result = run_cli(tmp_path / "home", "chat", "no-such-model", "hi")  # the engine says them, the face prints
    finally:
        stop_engine_of(paths)
    assert result.returncode == 2 and "no chat model called 'no-such-model'" in result.stderr
    assert result.stderr.count("chat.temprature") == 1, result.stderr
    assert f"{paths.config_file}:5: chat.temprature: unknown setting" in result.stderr
    assert "Traceback" not in result.stderr


DISK_FILLS_UP = """
import errno, logging, sys
from workbench.cli import main as cli
from workbench.core.settings.paths import AppPaths

class FullDisk:
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

cli.setup_logging(AppPaths.under(sys.argv[1]))
for handler in logging.getLogger().handlers:
    handler.stream = FullDisk()
logging.getLogger("workbench.test").warning("something worth logging")
print("went on")
"""


def test_a_full_disk_makes_logging_fail_quietly(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", DISK_FILLS_UP, str(tmp_path / "home")], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "went on\n", "")


def test_without_a_log_folder_a_verb_says_so_once_and_works(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "logs").write_text("a file where the log folder should be")
    result = run_cli(home, "ls", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)
    assert result.stderr.count("cannot write the log file") == 1 and "Traceback" not in result.stderr


# --- ls, rm, chat, compare, embed, serve ----------------------------------------------------------------------------

LLAMA = "mlx-community/tiny-llama-4bit"
EMBEDDER = "sentence-transformers/tiny-embedder"
UNSUPPORTED = "org/unsupported"


class Home:
    """WORKBENCH_HOME and the Hugging Face cache of one test, for in-process and subprocess runs alike."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.paths = AppPaths.under(root)
        self.cache = cache
        self.paths.models_dir.mkdir(parents=True)

    def env(self) -> dict[str, str]:
        env = {**os.environ, "WORKBENCH_HOME": str(self.root), "HF_HUB_CACHE": str(self.cache),
               "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
        env.pop("HF_TOKEN", None)
        return env

    def link(self, name: str, folder: Path) -> Path:
        """An imported model that is a symlink to a built model (cheap; `rm` would only remove the link)."""
        target = self.paths.models_dir / name
        target.symlink_to(folder, target_is_directory=True)
        return target

    def copy(self, name: str, folder: Path) -> Path:
        return Path(shutil.copytree(folder, self.paths.models_dir / name))

    def broken(self, name: str) -> Path:
        """Looks like an MLX model folder, fails to load."""
        folder = self.paths.models_dir / name
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')
        (folder / "model.safetensors").write_bytes(b"not safetensors at all")
        return folder

    def configure(self, text: str) -> None:
        self.paths.config_dir.mkdir(parents=True, exist_ok=True)
        self.paths.config_file.write_text(text)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """The test's home; `chat` starts an engine for it (a subprocess that inherits this environment: the same home,
    cache and offline hub), stopped at the end."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # for the engine
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # huggingface_hub is imported already
    monkeypatch.chdir(tmp_path)
    home = Home(tmp_path / "home", cache)
    yield home
    stop_engine_of(home.paths)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return Result(code, out, err)


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """argparse's own usage errors end the process with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def models(home: Home, tiny_models: dict[str, Path]) -> Home:
    home.link("tiny-small", tiny_models["small"])
    home.link("tiny-medium", tiny_models["medium"])
    return home


# --- help ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "rm", "chat", "compare", "embed", "serve"])
def test_every_command_says_what_it_does_and_its_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "exit status: 0" in " ".join(text.split())
    assert command in cli.build_parser().format_help()


# --- ls and rm -------------------------------------------------------------------------------------


@pytest.fixture
def stocked(home: Home, tiny_models: dict[str, Path], tmp_path: Path) -> Home:
    """An imported model, and a cache with a chat model in two revisions, an embedder and an unsupported repo."""
    llama = folder_files(tiny_models["small"])
    add_snapshot(home.cache, LLAMA, llama, "a" * 40, mtime=1_000_000)
    add_snapshot(home.cache, LLAMA, {**llama, "config.json": llama["config.json"] + b" "}, "b" * 40)
    weights = safetensors_bytes(tmp_path / "w.safetensors")
    embedder = {"config.json": b'{"model_type": "bert"}', "modules.json": b"[]", "model.safetensors": weights}
    add_snapshot(home.cache, EMBEDDER, embedder, "c" * 40)
    add_snapshot(home.cache, UNSUPPORTED, {"config.json": b'{"model_type": "no_such_arch"}',
                                           "model.safetensors": weights}, "d" * 40)  # fmt: skip
    home.copy("my-import", tiny_models["small"])
    return home


def blob_bytes(cache: Path, repo_id: str) -> int:
    return sum(p.stat().st_size for p in (hf_cache.repo_dir(cache, repo_id) / "blobs").iterdir())


def test_ls_lists_imports_cache_models_and_the_builtin_embedder(
    stocked: Home, tiny_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "ls", "--json")
    assert result.code == 0
    rows = {row["id"]: row for row in result.json()}
    assert list(rows) == ["my-import", LLAMA, EMBEDDER, DEFAULT_EMBEDDER_ID]
    assert [(r["kind"], r["source"]) for r in rows.values()] == [
        ("chat", "imported"), ("chat", "hf-cache"), ("embed", "hf-cache"), ("embed", "built-in")]  # fmt: skip
    small = sum(p.stat().st_size for p in tiny_models["small"].iterdir())
    assert rows["my-import"]["size_bytes"] == small
    # two revisions share all blobs but one config.json: each blob counted once, symlinks followed
    second_config = (tiny_models["small"] / "config.json").stat().st_size + 1
    assert rows[LLAMA]["size_bytes"] == blob_bytes(stocked.cache, LLAMA) == small + second_config
    assert Path(rows[LLAMA]["path"]).name == "b" * 40  # the newest revision is what loads
    assert rows[DEFAULT_EMBEDDER_ID]["size_bytes"] > 80_000_000


def test_ls_prints_an_aligned_table(stocked: Home, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "ls")
    assert result.code == 0
    header, *lines = result.out.splitlines()
    assert header.split() == ["ID", "KIND", "SIZE", "SOURCE", "PATH"]
    assert len(lines) == 4
    for column in ("KIND", "SOURCE", "PATH"):
        start = header.index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines), column
    size_end = header.index("SIZE") + len("SIZE")
    assert all(line[size_end - 1] == "B" for line in lines)  # right-aligned: "327 KB", "87 MB"


def test_ls_with_nothing_gives_an_empty_list(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [row["id"] for row in run(capsys, "ls", "--json").json()]
    assert ids == [DEFAULT_EMBEDDER_ID]


def test_rm_deletes_a_cache_repo_with_all_its_revisions(stocked: Home, capsys: pytest.CaptureFixture[str]) -> None:
    size = blob_bytes(stocked.cache, LLAMA)
    result = run(capsys, "rm", LLAMA, "--yes", "--json")
    assert result.code == 0, result.err
    folder = hf_cache.repo_dir(stocked.cache, LLAMA)
    assert result.json() == {"id": LLAMA, "kind": "chat", "source": "hf-cache", "path": str(folder.resolve()),
                             "freed_bytes": size}  # fmt: skip
    assert not hf_cache.repo_dir(stocked.cache, LLAMA).exists()
    assert hf_cache.repo_dir(stocked.cache, EMBEDDER).exists()
    assert LLAMA not in [row["id"] for row in run(capsys, "ls", "--json").json()]


def test_rm_deletes_an_imported_folder_and_any_cached_model_repo(
    stocked: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "rm", "my-import", "-y")
    assert result.code == 0 and result.out.startswith("deleted my-import (")
    assert not (stocked.paths.models_dir / "my-import").exists()
    # a repo ls does not list (mlx-lm cannot load it) can still be deleted by its id
    assert run(capsys, "rm", UNSUPPORTED, "--yes").code == 0
    assert not hf_cache.repo_dir(stocked.cache, UNSUPPORTED).exists()


def test_rm_refuses_unknown_models_the_builtin_embedder_and_silent_deletes(
    stocked: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = run(capsys, "rm", "tiny-llama", "--yes")
    assert unknown.code == 2 and f"did you mean: {LLAMA}" in unknown.err
    builtin = run(capsys, "rm", DEFAULT_EMBEDDER_ID, "--yes")
    assert builtin.code == 2 and "built-in" in builtin.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: no question, no delete
    silent = run(capsys, "rm", "my-import")
    assert silent.code == 2 and "--yes" in silent.err
    assert (stocked.paths.models_dir / "my-import").is_dir()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rm_asks_on_a_terminal(
    stocked: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    declined = run(capsys, "rm", EMBEDDER)
    assert declined.code == 1 and f"Delete {EMBEDDER} (" in declined.err and "? [y/N]" in declined.err
    assert hf_cache.repo_dir(stocked.cache, EMBEDDER).exists()
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert run(capsys, "rm", EMBEDDER).code == 0
    assert not hf_cache.repo_dir(stocked.cache, EMBEDDER).exists()


def test_rm_without_yes_in_a_real_process_exits_2(stocked: Home) -> None:
    result = subprocess.run([sys.executable, "-m", "workbench.cli.main", "rm", "my-import"], env=stocked.env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "pass --yes" in result.stderr and "Traceback" not in result.stderr
    assert (stocked.paths.models_dir / "my-import").is_dir()


def test_rm_of_a_model_in_use_exits_1_with_the_reason(
    stocked: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rm` deletes through the registry, which asks the manager first (this process holds no models; the engine's
    registry will tell the manager that does): a leased model is not deleted."""
    from tests.support.fake_chat import FakeChatBackend
    from workbench.cli import models as models_cli
    from workbench.core.models.inference import InferenceThread
    from workbench.core.models.lifecycle import ModelManager
    from workbench.core.models.memory import Budget
    from workbench.core.models.registry import ModelRegistry

    manager = ModelManager({"mlx-lm": FakeChatBackend(kind="mlx-lm")}, Budget(GB, "test"), InferenceThread(),
                           idle_unload_s=None)  # fmt: skip
    registry = ModelRegistry(stocked.paths, stocked.cache, manager)
    for spec in registry.loadable_specs():
        if spec.kind == "mlx-lm":
            manager.register(spec)
    lease = asyncio.run(manager.acquire(LLAMA, holder="chat"))
    monkeypatch.setattr(models_cli, "model_registry", lambda _paths: registry)
    try:
        refused = run(capsys, "rm", LLAMA, "--yes")
        assert refused.code == 1 and f"{LLAMA} is in use by chat" in refused.err
        assert hf_cache.repo_dir(stocked.cache, LLAMA).is_dir()
        asyncio.run(lease.release())
        assert run(capsys, "rm", LLAMA, "--yes").code == 0
        assert LLAMA not in {info.spec.id for info in manager.models()}
    finally:
        asyncio.run(manager.aclose())


# --- chat ------------------------------------------------------------------------------------------


def test_chat_json_gives_one_document(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "chat", "tiny-small", "w1 w2 w3", "--max-tokens", "6", "--temperature", "0", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert set(document) == {"model", "answer", "figures", "finish_reason", "stopped"}
    assert document["model"] == "tiny-small" and document["stopped"] is False
    figures = document["figures"]
    assert 1 <= figures["generation_tokens"] <= 6 and figures["prompt_tokens"] > 0
    assert figures["ttft_s"] >= 0 and figures["generation_tps"] > 0
    assert document["finish_reason"] == ("length" if figures["generation_tokens"] == 6 else "stop")
    assert "loading tiny-small" in result.err and "tok/s" in result.err.splitlines()[-1]


def test_chat_samples_with_the_models_own_defaults_under_the_flags(
    home: Home, tiny_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = home.paths.models_dir / "tiny-tuned"
    folder.mkdir()
    for file in tiny_models["small"].iterdir():
        (folder / file.name).symlink_to(file)
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": False, "max_new_tokens": 3}))
    defaults = run(capsys, "chat", "tiny-tuned", "w1 w2", "--json").json()
    assert defaults["figures"]["generation_tokens"] <= 3  # the model's max_new_tokens, not the built-in 512
    greedy = run(capsys, "chat", "tiny-tuned", "w1 w2", "--temperature", "0", "--max-tokens", "3", "--json").json()
    assert defaults["answer"] == greedy["answer"]  # do_sample false: greedy
    longer = run(capsys, "chat", "tiny-tuned", "w1 w2", "--max-tokens", "8", "--json").json()
    assert longer["figures"]["generation_tokens"] > 3 and longer["answer"].startswith(greedy["answer"])  # a flag wins


def test_chat_streams_to_stdout_and_figures_to_stderr(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    greedy = ("--max-tokens", "8", "--temperature", "0", "--system", "w5")
    streamed = run(capsys, "chat", "tiny-medium", "w1 w2", *greedy)
    assert streamed.code == 0, streamed.err
    answer = run(capsys, "chat", "tiny-medium", "w1 w2", *greedy, "--json").json()["answer"]
    assert answer and streamed.out == answer + "\n"
    last = streamed.err.splitlines()[-1]
    assert last.startswith("tiny-medium: first token ") and " tok @ " in last and "tok/s" in last


def test_chat_reads_the_prompt_from_stdin(
    models: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("w7 w8 w9\n"))
    result = run(capsys, "chat", "tiny-small", "-", "--max-tokens", "3", "--json")
    assert result.code == 0 and result.json()["figures"]["prompt_tokens"] >= 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    empty = run(capsys, "chat", "tiny-small", "-")
    assert empty.code == 2 and "the prompt is empty" in empty.err


def test_chat_usage_errors(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    unknown = run(capsys, "chat", "tiny", "hi")
    assert unknown.code == 2 and "did you mean:" in unknown.err and "tiny-small" in unknown.err
    embedder = run(capsys, "chat", DEFAULT_EMBEDDER_ID, "hi")
    assert embedder.code == 2 and "not a chat model" in embedder.err
    bad = run(capsys, "chat", "tiny-small", "hi", "--top-p", "0")
    assert bad.code == 2 and "--top-p" in bad.err
    assert "invalid int value" in usage_error(capsys, "chat", "tiny-small", "hi", "--max-tokens", "many")


def test_a_model_that_fails_to_load_exits_1(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    models.broken("broken")
    result = run(capsys, "chat", "broken", "hi")
    assert result.code == 1 and "broken failed to load" in result.err
    assert result.out == ""


def interrupted_answer(models: Home, seed: int) -> tuple[int, str]:
    """``workbench chat`` on a long answer, ctrl+c once it has begun: its exit status and stderr."""
    command = [sys.executable, "-m", "workbench.cli.main", "chat", "tiny-medium", "w1", "--max-tokens", "4000",
               "--temperature", "1", "--seed", str(seed)]  # fmt: skip
    child = subprocess.Popen(command, env=models.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert select.select([child.stdout], [], [], 60)[0], "no answer within 60 s"
        first = child.stdout.read1(64)  # type: ignore[attr-defined]  # the answer has begun
        assert first
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    return child.returncode, err.decode()


def test_ctrl_c_stops_the_answer_with_status_130(models: Home) -> None:
    # A random-weight model may end its answer by itself (its end token) before the signal arrives: that seed lost
    # the race and the next one is tried; a stop that does not work fails every try.
    for seed in range(3):
        status, stderr = interrupted_answer(models, seed)
        assert status == 130, stderr
        assert "Traceback" not in stderr
        figures = stderr.splitlines()[-1]
        if figures.endswith("(stopped)"):
            break
    else:
        pytest.fail(f"three answers were never stopped by ctrl+c: {figures}")
    assert "tok/s" in figures
    generated = re.search(r"· (\d+) tok(?: @| ·)", figures)  # "… · 345 tok @ 720.2 tok/s · …" ("1 tok ·": no speed)
    assert generated is not None and int(generated.group(1)) < 4000


@pytest.mark.real_model
def test_smollm2_knows_the_capital_of_france(
    home: Home, smollm2_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home.link(DEFAULT_CHAT_ID, smollm2_dir)
    result = run(capsys, "chat", DEFAULT_CHAT_ID, "What is the capital of France?", "--temperature", "0",
                 "--max-tokens", "8")  # fmt: skip
    assert result.code == 0, result.err
    assert "Paris" in result.out


ONE_WORD = ("What color is the sky?", "--system", "Reply in one word.", "--temperature", "0")  # ends in ~9 tokens


@pytest.mark.real_model
@pytest.mark.parametrize(("verb", "flags", "ends_by"), [
    ("chat", ("--max-tokens", "24"), "stop"),
    ("chat", ("--max-tokens", "3"), "length"),
    ("chat", ("--max-tokens", "24", "--json"), "stop"),
    ("compare", ("--max-tokens", "24"), "stop"),
    ("compare", ("--max-tokens", "3", "--json"), "length"),
])  # fmt: skip
def test_answering_verbs_exit_0_however_the_answer_ends(
    home: Home, smollm2_dir: Path, verb: str, flags: tuple[str, ...], ends_by: str
) -> None:
    """An answer that ended by itself left the process to abort at exit (134, "terminate called …")."""
    home.link(DEFAULT_CHAT_ID, smollm2_dir)
    models = (DEFAULT_CHAT_ID,) * (2 if verb == "compare" else 1)
    result = subprocess.run([sys.executable, "-m", "workbench.cli.main", verb, *models, *ONE_WORD, *flags],
                            env=home.env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "terminate" not in result.stderr and "Traceback" not in result.stderr
    if "--json" in flags:
        document = json.loads(result.stdout)
        sides = [document] if verb == "chat" else [document["a"], document["b"]]
        assert [side["finish_reason"] for side in sides] == [ends_by] * len(sides)
    else:
        figures = [line for line in result.stderr.splitlines() if "tok/s" in line]
        assert len(figures) == len(models)
        assert all(("(hit --max-tokens)" in line) == (ends_by == "length") for line in figures)


def test_chat_and_compare_answer_with_a_remote_endpoint_model(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    """`chat lab:m` exited 2, "is an embedding model": the CLI took every model that is not mlx-lm for one."""
    with fake_openai(model="m", pieces=("Hel", "lo", "!")) as server:
        home.configure(f'[[endpoints]]\nname = "lab"\nbase_url = "{server.base_url}"\n')  # models: asked the server
        plain = run(capsys, "chat", "lab:m", "hi", "--temperature", "0")
        document = run(capsys, "chat", "lab:m", "hi", "--json")
        both = run(capsys, "compare", "lab:m", "lab:m", "hi", "--json")
    assert (plain.code, plain.out) == (0, "Hello!\n"), plain.err
    assert document.code == 0 and document.json()["answer"] == "Hello!"
    assert document.json()["finish_reason"] == "stop"
    assert both.code == 0, both.err
    assert [both.json()[side]["answer"] for side in "ab"] == ["Hello!", "Hello!"]
    assert [request["messages"][-1] for request in server.requests] == [{"role": "user", "content": "hi"}] * 4


# --- compare ---------------------------------------------------------------------------------------


def test_compare_json_has_both_sides_and_the_plan(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "compare", "tiny-small", "tiny-medium", "w3 w4", "--max-tokens", "5", "--seed", "7", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["plan"]["kind"] == "together" and "both at once" in document["plan"]["reason"]
    for side, model in (("a", "tiny-small"), ("b", "tiny-medium")):
        assert document[side]["model"] == model and document[side]["error"] is None
        assert 1 <= document[side]["figures"]["generation_tokens"] <= 5
    assert "plan: " in result.err


def test_compare_prints_each_side_under_its_header(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "compare", "tiny-small", "tiny-medium", "w3 w4", "--max-tokens", "5", "--temperature", "0")
    assert result.code == 0, result.err
    a_at, b_at = result.out.index("=== A: tiny-small ===\n"), result.out.index("=== B: tiny-medium ===\n")
    assert a_at == 0 < b_at
    assert result.out[len("=== A: tiny-small ===\n") : b_at].strip()  # A's answer, whole, before B's header
    assert result.out[b_at:].split("\n", 1)[1].strip()
    figures = [line for line in result.err.splitlines() if "tok/s" in line]
    assert [line.split()[:2] for line in figures] == [["A", "tiny-small:"], ["B", "tiny-medium:"]]


def test_compare_runs_one_after_the_other_when_both_do_not_fit(
    models: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.core.models.backends.mlx_lm import MlxLmBackend
    from workbench.core.models.spec import ModelSpec

    backend = MlxLmBackend()
    costs = [backend.estimate(ModelSpec(n, n, "mlx-lm", models.paths.models_dir / n), 4096).total
             for n in ("tiny-small", "tiny-medium")]  # fmt: skip
    models.configure(f"[memory]\nbudget_gb = {(max(costs) + min(costs) // 2) / GB!r}\n")
    result = run(capsys, "compare", "tiny-small", "tiny-medium", "w1", "--max-tokens", "3", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["plan"]["kind"] == "sequential" and "one after the other" in result.err
    assert document["a"]["answer"] and document["b"]["answer"]


def test_a_failed_side_exits_1_but_the_other_answers(models: Home, capsys: pytest.CaptureFixture[str]) -> None:
    models.broken("broken")
    result = run(capsys, "compare", "broken", "tiny-small", "w1", "--max-tokens", "3", "--json")
    assert result.code == 1
    document = result.json()
    assert "failed to load" in document["a"]["error"] and document["a"]["answer"] == ""
    assert document["b"]["error"] is None and document["b"]["answer"]
    human = run(capsys, "compare", "broken", "tiny-small", "w1", "--max-tokens", "3")
    assert human.code == 1 and "A broken failed: " in human.err and "=== B: tiny-small ===" in human.out
    assert run(capsys, "compare", "tiny-small", "nope", "w1").code == 2


# --- embed -----------------------------------------------------------------------------------------

# `workbench embed` is a face of the engine: it starts one (a subprocess, with this test's WORKBENCH_HOME) when none
# runs, and `engine_stopped` stops it. With fake embedders, ctrl+c and the cache: tests/test_engine_embed_cli.py.


@pytest.fixture
def engine_stopped(home: Home) -> Iterator[Home]:
    from tests.support.engine_procs import stop_engine

    try:
        yield home
    finally:
        stop_engine({"WORKBENCH_HOME": str(home.root)})


@pytest.mark.real_model
def test_embed_a_text_file_with_minilm(
    engine_stopped: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("A cat sleeps on the mat.\n\nThe stars burn hydrogen.\nA cat sleeps on the mat.\nRain today.\n")
    result = run(capsys, "embed", DEFAULT_EMBEDDER_ID, str(notes))
    assert result.code == 0, result.err
    assert result.out == f"{tmp_path / 'notes.npy'}\n"
    vectors = np.load(tmp_path / "notes.npy")
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])  # file order
    assert "row i is the i-th passage" in result.err and "100%" in result.err


@pytest.mark.real_model
def test_embed_a_csv_with_bad_rows_lists_the_problems(
    engine_stopped: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,text,note\n1,hello world,x\n2,,y\n3\n4,good night,z\n")
    out = tmp_path / "out" / "vectors.bin"
    out.parent.mkdir()
    result = run(capsys, "embed", DEFAULT_EMBEDDER_ID, str(rows), "-o", str(out), "--column", "text", "--json")
    assert result.code == 0, result.err
    document = result.json()
    problems = ["rows.csv line 3: empty 'text'", "rows.csv line 4: missing column 'text'"]
    assert document == {"path": str(out), "count": 2, "dimensions": 384, "model": DEFAULT_EMBEDDER_ID,
                        "problems": problems}  # fmt: skip
    assert np.load(out).shape == (2, 384)
    assert "skipped: rows.csv line 3" in result.err


def test_embed_with_nothing_to_embed_or_the_wrong_model(
    models: Home, engine_stopped: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    nothing = run(capsys, "embed", DEFAULT_EMBEDDER_ID, str(empty))
    assert nothing.code == 1 and "nothing to embed" in nothing.err
    missing = run(capsys, "embed", DEFAULT_EMBEDDER_ID, str(tmp_path / "nope.txt"))
    assert missing.code == 1 and "no such file" in missing.err
    assert not (tmp_path / "empty.npy").exists()
    chat_model = run(capsys, "embed", "tiny-small", str(empty))
    assert chat_model.code == 2 and "not an embedding model" in chat_model.err
    unknown = run(capsys, "embed", "MiniLM", str(empty))
    assert unknown.code == 2 and DEFAULT_EMBEDDER_ID in unknown.err
    nowhere = run(capsys, "embed", DEFAULT_EMBEDDER_ID, str(empty), "-o", str(tmp_path / "no" / "x.npy"))
    assert nowhere.code == 1 and "cannot write" in nowhere.err


def test_progress_bar_redraws_on_a_terminal_and_stays_sparse_elsewhere() -> None:
    log = io.StringIO()
    bar = ProgressBar("embedding", "passages", log)
    for done in range(101):
        bar.update(done, 100)
    bar.finish()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("100%  100/100 passages")
    screen = Terminal()
    bar = ProgressBar("embedding", "passages", screen)
    bar.update(1, 2)
    bar.update(2, 2)
    bar.finish()
    assert screen.getvalue().count("\r") == 2 and screen.getvalue().endswith("\n")


# --- serve -----------------------------------------------------------------------------------------


# `workbench serve` is a face of the engine: it is tested end to end in tests/test_engine_serve.py (the engine's
# listeners, the first-use import, a taken port, ctrl+c, kill -9); here only what it decides before asking.


def test_serve_takes_its_key_from_the_flag_over_the_config_and_sends_it_with_the_request(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.cli.serve import plan_serve

    home.configure('[serve]\napi_key_env = "WB_TEST_KEY"\n')
    monkeypatch.setenv("WB_TEST_KEY", "from-the-config-0123456789")
    monkeypatch.setenv("OTHER_KEY", "from-the-flag-0123456789")
    parser = cli.build_parser()
    plan = plan_serve(home.paths, parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "0"]))
    assert (plan.host, plan.port, plan.api_key) == ("0.0.0.0", 0, "from-the-config-0123456789")
    assert "from-the-config" not in repr(plan)
    flagged = plan_serve(home.paths, parser.parse_args(["serve", "--api-key-env", "OTHER_KEY"]))
    assert (flagged.host, flagged.port, flagged.api_key) == ("127.0.0.1", 8000, "from-the-flag-0123456789")


def test_serve_refuses_bad_arguments_before_it_starts_an_engine(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.core.engine_home import engine_home

    assert "not a port number" in usage_error(capsys, "serve", "--port", "70000")
    refused = run(capsys, "serve", "--host", "0.0.0.0")
    assert refused.code == 2 and "refusing to serve on 0.0.0.0 without an API key" in refused.err
    assert not engine_home(home.paths).socket.exists()  # no engine was started


def test_ls_says_how_the_default_chat_model_comes_in_without_importing_it(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "ls", "--json")
    assert result.code == 0 and [row["id"] for row in result.json()] == [DEFAULT_EMBEDDER_ID]
    assert f"{DEFAULT_CHAT_ID}, the default chat model, is imported from its package on first use" in result.err
    assert "`workbench serve`" in result.err and not (home.paths.models_dir / DEFAULT_CHAT_ID).exists()
