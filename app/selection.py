"""Which connectors are judged at all: INCLUDE / EXCLUDE name patterns."""

import fnmatch
import re
from collections.abc import Iterable


def _compile(pattern: str) -> re.Pattern[str]:
    """``re:REGEX`` is a regular expression (whole-name match); anything else is a glob."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    return re.compile(fnmatch.translate(pattern))


class ConnectorSelector:
    """Applies include/exclude before judging; remembers answers since names rarely change."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str]) -> None:
        self._include = [_compile(pattern) for pattern in include]
        self._exclude = [_compile(pattern) for pattern in exclude]
        self._memo: dict[str, bool] = {}

    @property
    def selects_everything(self) -> bool:
        return not self._include and not self._exclude

    def selected(self, name: str) -> bool:
        """True when ``name`` matches an include pattern (or there are none) and no exclude."""
        if self.selects_everything:
            return True
        answer = self._memo.get(name)
        if answer is None:
            included = not self._include or any(p.fullmatch(name) for p in self._include)
            answer = included and not any(p.fullmatch(name) for p in self._exclude)
            if len(self._memo) > 100_000:
                self._memo.clear()  # bounded, whatever Connect sends
            self._memo[name] = answer
        return answer
