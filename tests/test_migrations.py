"""A database written by the released workbench (commit 5af3b01, schema 6) opens with today's code and keeps
every chat, compare run, vote, download job and embedding set; the compare plans become codes."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.support import old_db
from workbench.core.compare.run import Contender
from workbench.core.storage.chats import MessageStatus
from workbench.core.storage.db import MIGRATIONS
from workbench.core.storage.store import Store

FIXTURE = Path(__file__).parent / "data" / "workbench-v6.db"


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


@pytest.fixture
def old_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "workbench.db"
    shutil.copyfile(FIXTURE, copy)
    assert user_version(copy) == 6
    return copy


@pytest.fixture
def store(old_copy: Path) -> Iterator[Store]:
    opened = Store(old_copy)
    yield opened
    opened.close()


def test_the_schema_is_brought_up_to_date(store: Store, old_copy: Path) -> None:
    assert store.db.version() == len(MIGRATIONS) > 6
    store.close()
    assert user_version(old_copy) == len(MIGRATIONS)
    Store(old_copy).close()  # a second open finds nothing to do


def test_every_chat_and_message_is_kept(store: Store) -> None:
    conversations = store.chats.list_conversations()
    assert sorted(c.title for c in conversations) == sorted(chat[0] for chat in old_db.CHATS)
    by_title = {c.title: c for c in conversations}
    for title, model_id, system_prompt, sampling, messages in old_db.CHATS:
        conversation = by_title[title]
        assert (conversation.model_id, conversation.system_prompt, conversation.sampling) == (model_id, system_prompt,
                                                                                              sampling)  # fmt: skip
        assert conversation.message_count == len(messages)
        stored = store.chats.messages(conversation.id)
        assert [(m.role, m.content, m.status.value, m.error, m.figures) for m in stored] == messages
        if messages:
            assert f"# {title}" in store.chats.export_markdown(conversation.id)


def test_the_interrupted_answer_is_recovered(store: Store) -> None:
    assert store.chats.recover_interrupted() == 1
    paris = next(c for c in store.chats.list_conversations() if c.title == "Paris trip")
    last = store.chats.messages(paris.id)[-1]
    assert (last.content, last.status) == ("Rome is the cap", MessageStatus.INCOMPLETE)
    assert "_first token 0.31 s · prompt 20 tok @ 150.0 tok/s · 12 tok @ 7.4 tok/s · peak 0.12 GB_" in (
        store.chats.export_markdown(paris.id))  # fmt: skip


def test_every_compare_run_is_kept_with_its_plan_as_a_code(store: Store) -> None:
    runs = list(reversed(store.compare_runs.compare_runs()))  # oldest first, as written
    assert [run.plan for run in runs] == old_db.PLAN_CODES == ["together", "sequential", ""]
    assert len(runs) == len(old_db.RUNS)
    for run, written in zip(runs, old_db.RUNS, strict=True):
        prompt, a, b, _plan, blind, swapped, answer_a, answer_b, figures_a, error_b = written
        assert run.prompt == prompt
        # the old screen stored Contender.to_dict(): every sampling field, not only the ones set
        assert Contender.from_dict(run.contender_a) == Contender.from_dict(old_db.CONTENDERS[a])
        assert Contender.from_dict(run.contender_b) == Contender.from_dict(old_db.CONTENDERS[b])
        assert run.contender_a["sampling"]["top_p"] == 0.95
        assert (run.blind, run.swapped, run.answer_a, run.answer_b) == (blind, swapped, answer_a, answer_b)
        assert (run.figures_a, run.figures_b, run.error_a, run.error_b) == (figures_a, None, None, error_b)


def test_every_vote_is_kept(store: Store) -> None:
    assert store.votes.compare_votes() == old_db.VOTES_READ


def test_every_download_job_and_file_is_kept_in_queue_order(store: Store) -> None:
    jobs = store.downloads.download_jobs()
    expected = [old_db.JOBS[i] for i in old_db.QUEUE_ORDER]
    assert [job.repo_id for job in jobs] == [job[0] for job in expected]
    assert [job.state for job in jobs] == ["paused", "queued", "queued", "done"]
    for job, written in zip(jobs, expected, strict=True):
        _repo, revision, include, all_files, state, message, resume_at, commit, files = written
        assert (job.revision, job.include, job.all_files, job.state) == (revision, include, all_files, state)
        assert (job.message, job.resume_at, job.commit, job.files) == (message, resume_at, commit, [])
        assert job.total_bytes == (sum(f[1] for f in files) or None)
        assert job.done_bytes == sum(f[2] for f in files)
        stored = store.downloads.download_files(job.id)
        assert [(f.path, f.size, f.done_bytes, f.state) for f in stored] == files
        assert all(f.hash_kind == "sha256" and f.etag == f'"etag-{f.path}"' for f in stored)


def test_every_embedding_set_is_kept(store: Store) -> None:
    sets = store.embedding_sets.embedding_sets()
    assert [(s.path, s.column, s.model_id, s.passages) for s in sets] == list(reversed(old_db.EMBEDDING_SETS))


def test_new_writes_go_on_after_the_old_rows(store: Store) -> None:
    chat = store.chats.create_conversation("After the upgrade")
    store.chats.add_message(chat.id, "user", "still here?")
    assert store.chats.list_conversations()[0].title == "After the upgrade"
    run = store.compare_runs.add_compare_run("p", old_db.CONTENDERS["small"], old_db.CONTENDERS["large"],
                                             plan="sequential")  # fmt: skip
    store.votes.add_compare_vote(run, "b")
    assert store.votes.compare_votes()[-1] == ("small · T 0", "large", "b")
    job = store.downloads.add_download_job("org/new")
    assert store.downloads.download_jobs()[-1].id == job.id
