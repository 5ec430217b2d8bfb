"""The rows of tests/data/workbench-v6.db, a database written by the store of commit 5af3b01 (schema version 6).

``write_with_old_store`` made that file, once, with the code of that commit (its ``Store`` API, not this
checkout's), so the migration test opens a database as the released workbench really wrote it::

    git worktree add /tmp/olddb 5af3b01 && cp tests/support/old_db.py /tmp/old_db.py
    PYTHONPATH=/tmp/olddb:/tmp python -c "from old_db import write_with_old_store as w; w('tests/data/workbench-v6.db')"

The constants below are what went in; tests/test_migrations.py checks that the new code reads every one back.
Only the constants are imported by the test: the writer imports the old API when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES = {"ttft_s": 0.31, "prompt_tokens": 20, "prompt_tps": 150.0, "generation_tokens": 12,
           "generation_tps": 7.4, "peak_memory_gb": 0.12}  # fmt: skip

# (title, model_id, system_prompt, sampling, [(role, content, status, error, figures)])
CHATS: list[tuple[str, str | None, str, dict[str, Any], list[tuple[str, str, str, str | None, Any]]]] = [
    ("Paris trip", "tiny-small", "Be brief.", {"temperature": 0.2, "max_tokens": 64}, [
        ("user", "What is the capital of France?", "complete", None, None),
        ("assistant", "Paris.", "complete", None, FIGURES),
        ("user", "And of Italy?", "complete", None, None),
        ("assistant", "Rome is the cap", "streaming", None, None),  # the app died mid-answer
    ]),
    ("Stopped and failed", "tiny-medium", "", {}, [
        ("user", "Count to ten", "complete", None, None),
        ("assistant", "1 2 3", "stopped", None, FIGURES),
        ("user", "Again", "complete", None, None),
        ("assistant", "", "error", "the model was unloaded", None),
        ("user", "Once more", "complete", None, None),
        ("assistant", "1 2", "incomplete", None, None),
    ]),
    ("New chat", None, "", {}, []),
]

CONTENDERS = {
    "small": {"model_id": "org/small", "label": "small · T 0", "sampling": {"temperature": 0.0, "seed": 3},
              "system_prompt": "Be brief."},
    "large": {"model_id": "org/large", "label": "large", "sampling": {}, "system_prompt": ""},
}

# (prompt, a, b, plan as today's code receives it, blind, swapped, answer_a, answer_b, figures_a, error_b);
# a plan kind's name is turned into today's MemoryPlan when written ("" is the default: no plan given)
RUNS: list[tuple[str, str, str, str, bool, bool, str, str, Any, str | None]] = [
    ("Why is the sky blue?", "small", "large", "TOGETHER", False, False, "Rayleigh.", "Scattering.", FIGURES, None),
    ("Name a colour", "small", "large", "SEQUENTIAL", True, True, "Red.", "", None, "it fell over"),
    ("No plan given", "large", "small", "", False, False, "", "", None, None),
]
# (index into RUNS, the vote as the user cast it) and, in the order cast, what compare_votes() returns
VOTES: list[tuple[int, str]] = [(0, "a"), (1, "a"), (1, "tie"), (2, "both_bad")]
VOTES_READ = [("small · T 0", "large", "a"), ("small · T 0", "large", "b"), ("small · T 0", "large", "tie"),
              ("large", "small · T 0", "both_bad")]  # fmt: skip
# The plan codes the migration turns RUNS' plans into
PLAN_CODES = ["together", "sequential", ""]

# (repo_id, revision, include, all_files, state, message, resume_at, commit, [(path, size, done, state)])
JOBS: list[tuple[str, str, list[str], bool, str, str | None, float | None, str | None,
                 list[tuple[str, int, int, str]]]] = [
    ("org/queued-model", "main", [], False, "queued", None, None, "a" * 40, [
        ("config.json", 600, 600, "done"),
        ("model.safetensors", 5_000_000, 1_250_000, "downloading"),
        ("tokenizer.json", 2_000, 0, "pending"),
    ]),
    ("org/paused-model", "main", ["*.json"], False, "paused", "rate limited until 14:05", 1_900_000_000.0, "b" * 40,
     [("config.json", 700, 0, "pending")]),
    ("org/not-listed-yet", "v1.0", ["*.gguf"], True, "queued", None, None, None, []),
    ("org/finished", "main", [], False, "done", None, None, "c" * 40, [("config.json", 10, 10, "done")]),
]
# The queue order written last (indexes into JOBS): the paused job first
QUEUE_ORDER = [1, 0, 2, 3]

# (path, column, model_id, passages)
EMBEDDING_SETS: list[tuple[str, str | None, str, int]] = [
    ("/data/notes.csv", "text", "all-MiniLM-L6-v2", 120),
    ("/data/poems.txt", None, "all-MiniLM-L6-v2", 42),
]


def write_with_old_store(path: str | Path) -> None:  # pragma: no cover - run once, against commit 5af3b01
    """Write the rows above through the Store of commit 5af3b01, as its screens and download queue did."""
    from workbench.core.compare.run import Contender, MemoryPlan, PlanKind
    from workbench.core.storage.store import DownloadFile, MessageStatus, Store

    target = Path(path)
    if target.exists():
        raise SystemExit(f"{target} exists: the fixture is written once")
    store = Store(target)
    try:
        for title, model_id, system_prompt, sampling, messages in CHATS:
            chat = store.create_conversation(title, model_id=model_id, system_prompt=system_prompt, sampling=sampling)
            for role, content, status, error, figures in messages:
                store.add_message(chat.id, role, content, status=MessageStatus(status), figures=figures, error=error)
        run_ids = []
        for prompt, a, b, plan, blind, swapped, answer_a, answer_b, figures_a, error_b in RUNS:
            contender_a, contender_b = (Contender.from_dict(CONTENDERS[name]) for name in (a, b))
            memory_plan = MemoryPlan(PlanKind[plan], "the reason") if plan else ""
            run_id = store.add_compare_run(prompt, contender_a, contender_b, plan=memory_plan, blind=blind,
                                           swapped=swapped)  # fmt: skip
            store.update_compare_run(run_id, answer_a=answer_a, answer_b=answer_b, figures_a=figures_a,
                                     error_b=error_b)  # fmt: skip
            run_ids.append(run_id)
        for run, outcome in VOTES:
            store.add_compare_vote(run_ids[run], outcome)
        job_ids = []
        for repo_id, revision, include, all_files, state, message, resume_at, commit, files in JOBS:
            job = store.add_download_job(repo_id, revision, include=include, all_files=all_files)
            if files:
                store.set_download_files(job.id, [
                    DownloadFile(job.id, name, size, f'"etag-{name}"', "sha256", "0" * 64, done, file_state)
                    for name, size, done, file_state in files
                ])  # fmt: skip
            store.update_download_job(job.id, state=state, message=message, resume_at=resume_at, commit=commit,
                                      total_bytes=sum(f[1] for f in files) or None,
                                      done_bytes=sum(f[2] for f in files))  # fmt: skip
            job_ids.append(job.id)
        store.reorder_download_jobs([job_ids[i] for i in QUEUE_ORDER])
        for corpus, column, model_id, passages in EMBEDDING_SETS:
            store.remember_embedding_set(corpus, column, model_id, passages)
    finally:
        store.close()
