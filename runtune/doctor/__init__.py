"""`runtune doctor`: checks that a deployment (or the local platform) is wired the way the code expects.

Every check is a small function returning a `Check`: what was checked, whether it passed, what was
seen, and, when it failed, the command that fixes it. `runtune.doctor.local` checks the running
local platform, `runtune.doctor.cloud` a Cloud Run deployment through the Google APIs (with the
operator's Application Default Credentials), `runtune.doctor.identity` the IAM roles each service
account holds. The CLI (`runtune/cli/doctor.py`) prints them and exits 1 when any failed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One verdict. `fix` is what to run (or do) when `ok` is false; `skipped` marks a check that
    could not be made from this machine (it does not fail the run, and `detail` says why)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    @classmethod
    def passed(cls, name: str, detail: str) -> Check:
        return cls(name, True, detail)

    @classmethod
    def failed(cls, name: str, detail: str, fix: str) -> Check:
        return cls(name, False, detail, fix)

    @classmethod
    def not_checked(cls, name: str, detail: str) -> Check:
        return cls(name, True, detail, skipped=True)


def all_ok(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)
