"""Your own leaderboard: Elo ratings, win rates and vote counts from the blind votes in the database."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from workbench.core.compare.ratings import elo_ratings
from workbench.core.words import counted
from workbench.ui.services import services_of


class LeaderboardScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close", id="leaderboard.close")]

    DEFAULT_CSS = """
    LeaderboardScreen { align: center middle; }
    LeaderboardScreen > Vertical { width: 95%; height: 85%; border: round $primary; background: $surface; }
    LeaderboardScreen #leaderboard-note { padding: 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="leaderboard-note")
            table: DataTable[str] = DataTable(id="leaderboard", cursor_type="row", zebra_stripes=True)
            table.add_columns("Model (settings)", "Elo", "Votes", "Wins", "Losses", "Ties", "Both bad", "Win rate")
            yield table
        yield Footer()

    def on_mount(self) -> None:
        votes = services_of(self).store.votes.compare_votes()
        ratings = elo_ratings(votes)
        table = self.query_one(DataTable)
        for r in ratings:
            table.add_row(r.model, f"{r.rating:.0f}", str(r.games), str(r.wins), str(r.losses), str(r.ties),
                          str(r.both_bad), f"{r.win_rate:.0%}" if r.games else "–")  # fmt: skip
        note = "No votes yet: press b in Compare for blind mode, then vote with 1, 2, = or 0."
        if votes:
            note = (f"{counted(len(votes), 'blind vote')}. Elo starts at 1000; a win over an equal model moves about"
                    " 16 points.")
        self.query_one("#leaderboard-note", Static).update(note)
        table.focus()
