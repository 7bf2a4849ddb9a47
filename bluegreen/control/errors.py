"""Admin actions that cannot be done in the current state (mapped to 4xx in api/errors.py)."""

from __future__ import annotations


class ControlError(Exception):
    status_code = 409


class NoCandidate(ControlError):
    pass


class NoPreviousVersion(ControlError):
    pass


class NotRejected(ControlError):
    pass


class VersionNotFound(ControlError):
    status_code = 404


class VersionRejected(ControlError):
    status_code = 422
