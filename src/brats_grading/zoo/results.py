"""One verification result per check: a name, its status, and a line that says what was found."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckResult"]


@dataclass(frozen=True)
class CheckResult:
    """``passed`` is False only for a failure; a check the bundle declares not applicable passes as ``N/A``."""

    name: str
    passed: bool
    detail: str
    applicable: bool = True

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{status if self.applicable else 'N/A '}  {self.name}: {self.detail}"
