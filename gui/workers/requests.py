"""Request ids for workers whose jobs a newer request replaces (the studio's analysis workers).

The GUI thread begins a request (or cancels) by raising the latest id; the worker, between two steps of a job,
compares its job's id with the latest and abandons the job when they differ — from a progress callback by raising
`Cancelled`, which the worker catches. Reading an int another thread writes is safe under the GIL, and a stale
read only delays the abandon by one step.
"""

from __future__ import annotations


class Cancelled(Exception):
    """Raised from a progress callback to abandon a job that a newer request replaced."""


class RequestIds:
    def __init__(self) -> None:
        self.latest = 0

    def begin(self) -> int:
        self.latest += 1
        return self.latest

    def cancel(self) -> None:
        self.latest += 1

    def is_current(self, request: int) -> bool:
        return request == self.latest

    def check(self, request: int) -> None:
        if request != self.latest:
            raise Cancelled
