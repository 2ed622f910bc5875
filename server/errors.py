"""The documented errors (docs/protocol.md, "Errors") as one exception type.

Routes raise :class:`ApiError`; one handler turns it into a JSON ``4xx``.
WebSocket close codes live here too, so the table has one home in code.
"""

from __future__ import annotations

from flask import Response, jsonify

__all__ = ["CLOSE_BAD_MESSAGE", "CLOSE_GOING_AWAY", "CLOSE_INTERNAL", "CLOSE_UNSUPPORTED", "ApiError"]

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_INTERNAL = 1011
CLOSE_BAD_MESSAGE = 4400


class ApiError(Exception):
    """A refused request: HTTP ``status``, a stable ``error`` code, a ``detail``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def response(self) -> Response:
        resp = jsonify(error=self.error, detail=self.detail)
        resp.status_code = self.status
        resp.headers["Cache-Control"] = "no-store"
        return resp
