"""Where the workbench keeps its files: the platform's config, data and log folders.

``WORKBENCH_HOME`` puts all of them under one folder (tests, benchmarks, portable installs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "workbench"


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    log_dir: Path
    # the user's runtime folder, where the engine's socket lives (see core/engine_home.py); None: the platform's
    runtime_dir: Path | None = None

    @classmethod
    def under(cls, home: Path) -> AppPaths:
        home = Path(home)
        return cls(config_dir=home / "config", data_dir=home / "data", log_dir=home / "logs", runtime_dir=home / "run")

    @classmethod
    def from_env(cls) -> AppPaths:
        if home := os.environ.get("WORKBENCH_HOME"):
            return cls.under(Path(home))
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME)),
            runtime_dir=Path(platformdirs.user_runtime_dir(APP_NAME)),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def user_catalog(self) -> Path:
        return self.config_dir / "catalog.toml"

    @property
    def user_themes_dir(self) -> Path:
        return self.config_dir / "themes"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def embeddings_dir(self) -> Path:
        return self.data_dir / "embeddings"

    @property
    def prompt_cache_dir(self) -> Path:
        """The saved prompt caches of recent chats (chat content: private files)."""
        return self.data_dir / "prompt-cache"

    @property
    def database_file(self) -> Path:
        return self.data_dir / "workbench.sqlite3"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "workbench.log"
