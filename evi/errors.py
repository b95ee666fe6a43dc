"""Errors shared by every service."""

from __future__ import annotations


class BadFrame(ValueError):
    """A frame record that can never be processed; it goes to the dead-letter topic.

    `reason` is a short stable word used as a metric label and dead-letter header.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ConfigError(ValueError):
    """Bad configuration: the CLI prints it on one line and exits 2."""
