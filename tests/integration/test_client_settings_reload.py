"""Hot reload with a real file and the real watcher task: a changed settings file takes effect."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collection_operator.config import OperatorSettings, SettingsWatcher


async def test_changed_settings_file_takes_effect_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text("settings_poll_seconds = 0.05\nresync_interval_seconds = 30\n")
    applied: asyncio.Queue[OperatorSettings] = asyncio.Queue()
    watcher = SettingsWatcher(path, on_change=applied.put, environ={})
    watcher.start()
    try:
        path.write_text(
            "settings_poll_seconds = 0.05\nresync_interval_seconds = 45\n[profiles.Testing.pool]\nmax_connections = 4\n"
        )
        settings = await asyncio.wait_for(applied.get(), timeout=10)
        assert settings.resync_interval_seconds == 45
        assert settings.profile("Testing").pool.max_connections == 4
        assert watcher.current is settings
    finally:
        await watcher.stop()
