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
from workbench.ui.widths import Column, fit_columns, shorten_repo_id

COLUMNS = ("Model (settings)", "Elo", "Votes", "Wins", "Losses", "Ties", "Both bad", "Win rate")
DROP_ORDER = {"Losses": 2, "Ties": 1}  # both follow from the others: Votes = Wins + Losses + Ties + Both bad


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
            yield table
        yield Footer()

    def on_mount(self) -> None:
        votes = services_of(self).store.votes.compare_votes()
        self.ratings = elo_ratings(votes)
        self.call_after_refresh(self.fill)  # once the table has its width
        note = "No votes yet: press b in Compare for blind mode, then vote with 1, 2, = or 0."
        if votes:
            note = (f"{counted(len(votes), 'blind vote')}. Elo starts at 1000; a win over an equal model moves about"
                    " 16 points.")
        self.query_one("#leaderboard-note", Static).update(note)
        self.query_one(DataTable).focus()

    def on_resize(self) -> None:
        if hasattr(self, "ratings"):  # a screen is sized before it is mounted
            self.call_after_refresh(self.fill)

    def fill(self) -> None:
        """The columns in the width there is: names shortened with their ends kept, Losses then Ties dropped first."""
        table = self.query_one(DataTable)
        rows = [{"Model (settings)": r.model, "Elo": f"{r.rating:.0f}", "Votes": str(r.games), "Wins": str(r.wins),
                 "Losses": str(r.losses), "Ties": str(r.ties), "Both bad": str(r.both_bad),
                 "Win rate": f"{r.win_rate:.0%}" if r.games else "–"} for r in self.ratings]  # fmt: skip
        widths = {key: max([len(key), *(len(row[key]) for row in rows)]) for key in COLUMNS}
        keys, name_width = fit_columns([Column(key, widths[key], DROP_ORDER.get(key, 0)) for key in COLUMNS],
                                       (table.size.width or self.app.size.width) - 2, COLUMNS[0], 24)  # fmt: skip
        cursor = table.cursor_row
        table.clear(columns=True)
        for key in keys:
            table.add_column(key, key=key, width=name_width if key == COLUMNS[0] else widths[key])
        for row in rows:
            row[COLUMNS[0]] = shorten_repo_id(row[COLUMNS[0]], name_width)
            table.add_row(*(row[key] for key in keys))
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
