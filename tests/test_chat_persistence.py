"""Kill the app mid-answer (SIGKILL, no clean-up) and start it again: nothing already shown is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.test_chat_ui import chat_app, open_chat
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60

CHILD = """
import asyncio, sys
from tests.support.fake_chat import Script, services_with_fake
from tests.support.waits import wait_for
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.chat_input import ChatInput

async def main():
    script = Script(tokens=[f"word{i} " for i in range(100_000)], delay_s=0.005)
    services, _ = services_with_fake(AppPaths.under(sys.argv[1]), script)
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.current_mode == "chat" and app.screen.query(ChatInput), "the Chat pane")
        app.screen.query_one(ChatInput).focus()
        await pilot.press(*"tell me everything", "enter")
        await asyncio.sleep(600)  # streams until the test kills this process

asyncio.run(main())
"""


def saved_answer(database: Path) -> str:
    if not database.exists():
        return ""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone() is None:
            return ""  # the child has made the file but not its tables yet
        row = db.execute("SELECT content FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else ""


async def test_killed_mid_answer_the_partial_answer_survives_marked_incomplete(app_paths: AppPaths) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(app_paths.config_dir.parent)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while len(saved_answer(app_paths.database_file).split()) < 50:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the answer never reached the database"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait(timeout=WAIT)
    seen_before_kill = saved_answer(app_paths.database_file)

    services = build_services(app_paths)
    assert services.recovered_messages == 1
    conversation = services.store.chats.list_conversations()[0]
    user, answer = services.store.chats.messages(conversation.id)
    assert user.content == "tell me everything"
    assert answer.status is MessageStatus.INCOMPLETE
    assert answer.content.startswith("word0 word1 ") and answer.content == seen_before_kill
    services.store.close()
    await services.manager.aclose()

    app, _ = chat_app(app_paths)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await open_chat(app, pilot)
        shown = chat.message_views()[-1]
        assert shown.content == seen_before_kill
        assert "incomplete" in str(shown.query_one(".note").render())
