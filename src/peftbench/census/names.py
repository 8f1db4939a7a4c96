"""Finding technique names in text: one matcher over every alias, and variant folding.

Names and aliases come from `peftbench.methods.aliases`, matched on word boundaries: "LoRA"
matches in "lora_alpha" and "LoRA-based" but not in "Flora" or "LoRaWAN". The aliases are
compiled as tries into two regexes, so that each match is the longest alias at its position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from peftbench.methods.aliases import ALIASES, AMBIGUOUS, EXACT_CASE, VARIANT_OF

_SEPARATORS = re.compile(r"[\s_-]+")
_SEP = "\x00"  # a separator in an alias, as a trie token


@dataclass(frozen=True)
class NameMatcher:
    """Two compiled regexes over every countable alias, each matching the longest alias.

    ``loose`` runs on lower-cased text (aliases matched in any case); ``exact`` runs on the
    original text (aliases that are ordinary words in another case). Each maps a matched
    string, separators removed, back to its technique.
    """

    loose: re.Pattern[str]
    loose_keys: dict[str, str]
    exact: re.Pattern[str]
    exact_keys: dict[str, str]

    def find(self, text: str) -> set[str]:
        """The techniques named in ``text`` (word-boundary aware)."""
        found = {self.loose_keys[_strip_separators(m)] for m in self.loose.findall(text.lower())}
        found.update(self.exact_keys[_strip_separators(m)] for m in _scan_exact(self.exact, text))
        return found


def _scan_exact(pattern: re.Pattern[str], text: str) -> Iterator[str]:
    # The exact pattern has no look-behind, which lets the regex engine skip ahead to its few
    # first letters (several times faster); the left word boundary is checked here instead,
    # retrying one character later so that a rejected match cannot hide one inside it.
    pos = 0
    while match := pattern.search(text, pos):
        start = match.start()
        if start and text[start - 1].isascii() and text[start - 1].isalnum():
            pos = start + 1
            continue
        yield match.group()
        pos = match.end()


def _strip_separators(text: str) -> str:
    return _SEPARATORS.sub("", text)


def _trie(aliases: Iterable[str]) -> dict:
    # Separators inside an alias become one SEP token: any one separator, or none, matches it.
    root: dict = {}
    for alias in aliases:
        node = root
        for token in _SEPARATORS.sub(_SEP, alias.strip()):
            node = node.setdefault(token, {})
        node[""] = {}
    return root


def _trie_regex(node: dict) -> str:
    # A trie as one regex: shared prefixes are tested once (about 2x faster than a flat
    # alternation), and each optional continuation is tried first, so the longest alias wins.
    branches = []
    for token in sorted(k for k in node if k):
        head = r"[\s_-]?" if token == _SEP else re.escape(token)
        branches.append(head + _trie_regex(node[token]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{body})?" if "" in node else body


def _keys(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for alias, name in pairs:
        key = _strip_separators(alias)
        if keys.setdefault(key, name) != name:
            raise ValueError(f"alias {alias!r} names both {keys[key]!r} and {name!r}")
    return keys


@lru_cache(maxsize=1)
def name_matcher() -> NameMatcher:
    """The matcher built from `peftbench.methods.aliases` (built once, then shared)."""
    pairs = [(a, n) for n, aliases in ALIASES.items() for a in aliases if a not in AMBIGUOUS]
    loose = [(a.lower(), n) for a, n in pairs if a not in EXACT_CASE]
    exact = [(a, n) for a, n in pairs if a in EXACT_CASE]
    # ASCII letters and digits only count as "inside a word": "LoRAで" still names LoRA.
    loose_trie = _trie_regex(_trie(a for a, _ in loose))
    exact_trie = _trie_regex(_trie(a for a, _ in exact))
    return NameMatcher(
        loose=re.compile(rf"(?<![A-Za-z0-9]){loose_trie}(?![A-Za-z0-9])"),
        loose_keys=_keys(loose),
        exact=re.compile(rf"{exact_trie}(?![A-Za-z0-9])"),
        exact_keys=_keys(exact),
    )


def fold_variants(techniques: set[str]) -> set[str]:
    """Drop each technique that a more specific one in the set refines (QLoRA + LoRA -> QLoRA).

    Used for the "exactly one" view: a card saying "QLoRA, i.e. LoRA on a 4-bit model" names
    one technique, not two.
    """
    parents = {VARIANT_OF[t] for t in techniques if t in VARIANT_OF}
    return techniques - parents
