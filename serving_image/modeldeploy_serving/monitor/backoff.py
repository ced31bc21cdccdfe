"""Exponential backoff as a value: the caller sleeps, this only counts. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float
    cap: float
    factor: float = 2.0
    failures: int = 0

    def failed(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        delay = min(self.cap, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        return delay

    def succeeded(self) -> int:
        """Record a success; return how many failures it ended."""
        ended, self.failures = self.failures, 0
        return ended
