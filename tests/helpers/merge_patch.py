"""JSON merge patch (RFC 7386) as the API server applies it, for tests of status patches."""

from __future__ import annotations

from modeldeploy.status import merged as merge

__all__ = ["merge"]
