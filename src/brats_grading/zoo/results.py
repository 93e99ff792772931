"""One verification result per check: a name, its status, and a line that says what was found."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckResult"]


@dataclass(frozen=True)
class CheckResult:
    """``passed`` is False only for a failure; a check the zoo exempts the bundle from shows as ``N/A`` (or
    ``FAIL`` when the project's own stand-in for it, e.g. a traced export, failed)."""

    name: str
    passed: bool
    detail: str
    applicable: bool = True

    def line(self) -> str:
        status = "FAIL" if not self.passed else "PASS" if self.applicable else "N/A "
        return f"{status}  {self.name}: {self.detail}"
