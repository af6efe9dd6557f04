"""Qdrant's error answers, raised by the engine and the REST handlers alike."""

from __future__ import annotations


class ApiError(Exception):
    """An error with Qdrant's HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


def wrong_input(message: str) -> ApiError:
    return ApiError(400, f"Wrong input: {message}")
