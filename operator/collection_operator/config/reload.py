"""Hot reload: a task polls the settings file's content hash and applies a changed file without a restart.

A file that fails to parse or validate is logged and ignored; the last good settings stay in force.
Environment variables still win over the file after a reload (they are read again each time).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from .settings import OperatorSettings, load_settings

log = logging.getLogger(__name__)

OnChange = Callable[[OperatorSettings], Awaitable[None] | None]


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class SettingsWatcher:
    """Keeps `current` in step with the settings file and calls `on_change` with each new version."""

    def __init__(
        self,
        path: Path | str,
        on_change: OnChange | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._environ = environ
        self._callbacks: list[OnChange] = [on_change] if on_change else []
        self._digest = _digest(self.path)
        self.current = load_settings(self.path if self._digest else None, environ)
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, callback: OnChange) -> None:
        self._callbacks.append(callback)

    async def check_once(self) -> bool:
        """Reload if the file's content changed since the last look; True when new settings took effect."""
        digest = _digest(self.path)
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            settings = load_settings(self.path if digest else None, self._environ)
        except (ValidationError, ValueError, OSError) as error:  # tomllib.TOMLDecodeError is a ValueError
            log.error("settings file %s rejected, keeping the previous settings: %s", self.path, error)
            return False
        if settings == self.current:
            return False
        self.current = settings
        log.info("settings file %s reloaded", self.path)
        for callback in self._callbacks:
            result = callback(settings)
            if inspect.isawaitable(result):
                await result
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.current.settings_poll_seconds)
            try:
                await self.check_once()
            except Exception:  # a failing subscriber must not end hot reload
                log.exception("applying reloaded settings failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"settings-watcher:{self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
