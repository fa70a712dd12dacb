"""障害レベルの判定: from a reported symptom and/or a CloudWatch alarm to a severity.

Rules, in order:
1. A valid severity given by the reporter (`override`) always wins.
2. The report is read like an on-call engineer reads it, with the runbook's vocabulary
   (`triage.vocabulary`, see the comments there):
   - the text is normalised (`normalize_report`: NFKC full/half-width, casefold, quotes, long vowel
     marks, hyphens, spelling variants such as 漏えい → 漏洩);
   - it is cut into clauses (。、, but, 〜るが …) and the vocabulary words are found in it: scope
     (全ユーザー / 一部 / 時々 / ユーザー影響なし), subjects (what is affected), manners (how it fails),
     workarounds, negations (「ログインは問題ない」, "no data loss": the denied words do not count),
     and the catalogue's phrases (label, id, aliases);
   - every subject said with a manner in the same clause is a reading with the subject's level for
     that manner (a subject with no manner takes the subject's `default`: when unsure, the higher
     one); a catalogue phrase is a reading with its symptom's level;
   - scope and workaround words move each reading (a catalogue phrase only downwards); a grave P1
     (data loss, leaks, security) never moves;
   - the highest reading wins (when unsure, the higher one). `rule` says why in words, `evidence`
     lists the words that decided it, `matched` every word found (denied ones marked).
3. An alarm is looked up by name in the environment's alarm map; an unmapped alarm uses the
   documented `default_alarm` (never dropped). A mapping's own severity wins over its symptom's.
4. Text and alarm both given: the higher severity wins (the text on a tie). Text that matches
   nothing adds no evidence next to an alarm, so it does not raise the alarm's severity.
5. Nothing read: `triage.unmatched_severity` (when unsure, the higher one), moved only by the scope
   and workaround words found.

Pure Python and light (no third-party import): the command line `incident-ops severity` uses it.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from incident_ops.core.runbook import (
    SEVERITIES,
    VOCABULARY_PATTERN_GAP,
    VOCABULARY_PATTERN_MARK,
    Runbook,
    Triage,
    Vocabulary,
)

__all__ = [
    "Classification",
    "Evidence",
    "classify",
    "fingerprint_for",
    "higher_severity",
    "normalize_report",
    "normalize_text",
    "severity_rank",
    "symptom_choices",
    "vocabulary_problems",
]

Source = Literal["override", "symptom", "facets", "alarm", "unmatched"]

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2032": "'", "`": "'"})
# A long vowel mark (or a dash typed for one) ending a katakana word: ユーザー = ユーザ, サーバ－ = サーバ.
_LONG_VOWEL = re.compile(r"(?<=[\u30a1-\u30fa])[\u30fc\u2010-\u2015\u2212\-~\u301c]+(?![\u30a1-\u30fa\u30fc])")
# CamelCase metric names (TargetResponseTime, CPUUtilization); not DDoS, PDFs or iPad.
_CAMEL = re.compile(r"(?<=[a-z]{2})(?=[A-Z][a-z]{2})|(?<=[A-Z]{2})(?=[A-Z][a-z]{2})")
# Hyphens, underscores and slashes inside ASCII words: health-check_failed → health check failed.
_JOINERS = re.compile(r"(?<=[a-z0-9])[-_/]+(?=[a-z0-9])")
# A space between two Japanese characters carries nothing (「ログイン できない」).
_JA_SPACE = re.compile(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])")
# The contrastive が of 「ログインはできるが…」「遅いが…」: a clause ends there.
_CONTRAST_GA = re.compile(r"(?<=[るたいすだ])が")
_SUFFIXES = ("ing", "es", "ed", "s", "d", "")
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")  # a line ends a clause

_MANNER_LIKE = ("manner", "symptom")
_NEGATION = ("negation_after", "negation_fine", "negation_before")
# How far a "before" negation reaches: "no data loss", "not a security issue".
_BEFORE_REACH = 6
_ADJACENT = 3  # characters between a broad subject and the subject it gives way to (の, space)
_CACHE_SIZE = 8


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One word found in the report: its facet (scope, subject, manner, workaround, symptom,
    negation), the value within the facet (partial, login, broken, all_users_down …) and the word as
    the runbook writes it. `negated_by`: the negation that denied it (for a workaround, also the
    words that undid it: 「再読み込みしても直らない」)."""

    facet: str
    value: str
    word: str
    negated_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"facet": self.facet, "value": self.value, "word": self.word}
        if self.negated_by is not None:
            data["negated_by"] = self.negated_by
        return data


@dataclass(frozen=True)
class Classification:
    """The severity and why: `rule` is a short human-readable reason, `candidates` what was considered,
    `evidence` the words that decided it, `matched` every vocabulary word found in the report."""

    severity: str
    rule: str
    symptom_id: str | None
    symptom_label: str | None
    impact: str | None
    candidates: list[tuple[str, str]] = field(default_factory=list)
    source: Source = "symptom"
    # The service an alarm points at (alarm map), None for reports without an alarm.
    service: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    matched: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "symptom": self.symptom_id,
            "label": self.symptom_label,
            "impact": self.impact,
            "source": self.source,
            "service": self.service,
            "candidates": [{"symptom": symptom_id, "severity": severity} for symptom_id, severity in self.candidates],
            "evidence": [item.to_dict() for item in self.evidence],
            "matched": [item.to_dict() for item in self.matched],
        }


def severity_rank(severity: str) -> int:
    """0 for P1 (the highest) to 3 for P4; ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; severities are {', '.join(SEVERITIES)}") from None


def higher_severity(first: str, second: str) -> str:
    """The more severe of two severities (P1 is higher than P2)."""
    return first if severity_rank(first) <= severity_rank(second) else second


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), casefold, straight quotes, single spaces (fingerprints)."""
    folded = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return " ".join(folded.split())


_DASHES = frozenset("\u30fc\u2010\u2011\u2012\u2013\u2014\u2015\u2212-~\u301c")


def _base_normalize(text: str) -> str:
    # Each step only when it can apply: the vocabulary (a thousand words) is normalised at load.
    if "\n" in text or "\r" in text:
        text = _NEWLINES.sub("。", text)
    text = unicodedata.normalize("NFKC", text)
    if not text.islower():
        text = _CAMEL.sub(" ", text)
    text = normalize_text(text)
    if "-" in text or "_" in text or "/" in text:
        text = _JOINERS.sub(" ", text)
    if not _DASHES.isdisjoint(text):
        text = _LONG_VOWEL.sub("", text)
    if " " in text and not text.isascii():
        text = _JA_SPACE.sub("", text)
    return text


def symptom_choices(runbook: Runbook) -> list[tuple[str, str]]:
    """(id, label) of every catalogued symptom, in runbook order, for UI forms."""
    return [(symptom.id, symptom.label) for symptom in runbook.triage.symptoms]


# --- the compiled vocabulary ----------------------------------------------------------------------


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


@dataclass(frozen=True)
class _Entry:
    kind: str  # symptom | scope | subject | manner | workaround | undone | negation_after | negation_before | ignore
    key: str  # the value within the kind: partial, login, broken, a symptom id …
    word: str  # as written in the runbook


@dataclass(frozen=True)
class _Word:
    text: str  # normalised
    entry: _Entry
    left_boundary: bool
    suffixes: tuple[str, ...]
    right_boundary: bool

    @classmethod
    def of(cls, text: str, entry: _Entry) -> _Word:
        last = text[-1]
        if last.isascii() and last.isalpha():
            suffixes = _SUFFIXES
        elif last.isascii() and last.isdigit():
            suffixes = ("s", "")
        else:
            suffixes = ("",)
        return cls(text, entry, _ascii_alnum(text[0]), suffixes, _ascii_alnum(last))

    def match_at(self, text: str, start: int) -> int:
        """The end of this word found at `start` (with an English suffix), or -1."""
        if self.left_boundary and start > 0 and _ascii_alnum(text[start - 1]):
            return -1
        stem, suffixes = self.text, self.suffixes
        if not text.startswith(stem, start):
            # save → saving, freeze → freezing: a final e gives way to -ing
            if not (len(suffixes) > 2 and stem.endswith("e") and text.startswith(stem[:-1] + "ing", start)):
                return -1
            stem, suffixes = stem[:-1] + "ing", ("",)
        end = start + len(stem)
        if not self.right_boundary:
            return end
        for suffix in suffixes:
            stop = end + len(suffix)
            if text.startswith(suffix, end) and (stop >= len(text) or not _ascii_alnum(text[stop])):
                return stop
        return -1


class _Index:
    """Leftmost-longest search for many words at once: words keyed by their first two characters
    (one-character words apart), longest first."""

    def __init__(self, words: list[_Word]) -> None:
        self.by_two: dict[str, list[_Word]] = {}
        self.by_one: dict[str, list[_Word]] = {}
        for word in sorted(words, key=lambda w: -len(w.text)):
            if len(word.text) >= 2:
                self.by_two.setdefault(word.text[:2], []).append(word)
            else:
                self.by_one.setdefault(word.text, []).append(word)

    def __bool__(self) -> bool:
        return bool(self.by_two or self.by_one)

    def _candidates(self, text: str, index: int) -> list[_Word]:
        two = self.by_two.get(text[index:index + 2])
        one = self.by_one.get(text[index])
        if two and one:
            return [*two, *one]
        return two or one or []

    def scan(self, text: str) -> list[tuple[int, int, _Entry]]:
        found = []
        index, size = 0, len(text)
        while index < size:
            for word in self._candidates(text, index):
                end = word.match_at(text, index)
                if end > 0:
                    found.append((index, end, word.entry))
                    index = end
                    break
            else:
                index += 1
        return found

    def find_all(self, text: str) -> list[tuple[int, int, _Entry]]:
        """Every occurrence of every word (overlaps allowed): clause breaks, pattern parts."""
        found = []
        for index in range(len(text)):
            for word in self._candidates(text, index):
                end = word.match_at(text, index)
                if end > 0:
                    found.append((index, end, word.entry))
        return found


@dataclass(frozen=True)
class _Pattern:
    first: _Word
    second: _Word
    entry: _Entry


class _Words:
    """A vocabulary compiled: its normalisation, word index, patterns and clause breaks; `problems`
    lists what the runbook schema refuses (the same word twice once normalised …)."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.problems: list[str] = []
        variants = {_base_normalize(k): _base_normalize(v) for k, v in vocabulary.variants.items()}
        self.variants = {k: v for k, v in variants.items() if k}
        # A quick "could any variant be in this text" (most words have none): their first characters.
        self.variant_hint = re.compile("|".join(sorted({re.escape(k[:2]) for k in self.variants})) or "$^")
        self.variant_pattern = re.compile("|".join(
            ("(?<![a-z0-9])" if _ascii_alnum(k[0]) else "") + re.escape(k) + ("(?![a-z0-9])" if _ascii_alnum(k[-1]) else "")
            for k in sorted(self.variants, key=len, reverse=True))) if self.variants else None

        words: list[_Word] = []
        self.patterns: list[_Pattern] = []
        owner: dict[str, str] = {}

        def add(word: str, entry: _Entry, where: str) -> None:
            if VOCABULARY_PATTERN_MARK in word:
                first, second = (self.normalize(part) for part in word.split(VOCABULARY_PATTERN_MARK, 1))
                if not first or not second:
                    self.problems.append(f"at {where}: the pattern {word!r} is empty once normalised")
                    return
                self.patterns.append(_Pattern(_Word.of(first, entry), _Word.of(second, entry), entry))
                return
            text = self.normalize(word)
            if not text:
                self.problems.append(f"at {where}: {word!r} is empty once normalised")
                return
            if text in owner and owner[text] != where:
                self.problems.append(
                    f"at {where}: {word!r} reads as {text!r}, which is already in {owner[text]} (a word has one meaning)"
                )
                return
            owner[text] = where
            words.append(_Word.of(text, entry))

        for name, scope in vocabulary.scope.items():
            for word in scope.words:
                add(word, _Entry("scope", name, word), f"scope.{name}.words")
        for name, subject in vocabulary.subjects.items():
            for word in subject.words:
                add(word, _Entry("subject", name, word), f"subjects.{name}.words")
        for name, manner in vocabulary.manners.items():
            for word in manner.words:
                add(word, _Entry("manner", name, word), f"manners.{name}.words")
        if vocabulary.workaround is not None:
            for word in vocabulary.workaround.words:
                add(word, _Entry("workaround", "workaround", word), "workaround.words")
            for word in vocabulary.workaround.undone_by:
                add(word, _Entry("undone", "workaround", word), "workaround.undone_by")
        for word in vocabulary.negation.after:
            add(word, _Entry("negation_after", "after", word), "negation.after")
        for word in vocabulary.negation.fine:
            add(word, _Entry("negation_fine", "fine", word), "negation.fine")
        for word in vocabulary.negation.before:
            add(word, _Entry("negation_before", "before", word), "negation.before")
        for word in vocabulary.ignore:
            add(word, _Entry("ignore", "ignore", word), "ignore")
        self.words = _Index(words)
        self.patterns_by_first: dict[str, list[_Pattern]] = {}
        for pattern in self.patterns:
            self.patterns_by_first.setdefault(pattern.first.text, []).append(pattern)
        self.pattern_firsts = _Index([
            _Word.of(first, _Entry("pattern", first, first)) for first in self.patterns_by_first])

        breaks = []
        for word in vocabulary.clause_breaks:
            # ". " and ": " keep their trailing space: the dot of peoplebooster.com is no break.
            text = self.normalize(word) + (" " if word.endswith(" ") and word.strip() else "")
            if text:
                breaks.append(_Word.of(text, _Entry("break", "break", word)))
        self.breaks = _Index(breaks)

    def normalize(self, text: str) -> str:
        base = _base_normalize(text)
        if self.variant_pattern is None or not self.variant_hint.search(base):
            return base
        return " ".join(self.variant_pattern.sub(lambda m: self.variants[m.group(0)], base).split())


class _Compiled:
    """The vocabulary's words and the catalogue's phrases, for one runbook's triage."""

    def __init__(self, triage: Triage) -> None:
        self.w = _compiled_words(triage.vocabulary)
        self.vocabulary = triage.vocabulary
        self.normalize = self.w.normalize
        self.words, self.breaks = self.w.words, self.w.breaks
        self.patterns_by_first, self.pattern_firsts = self.w.patterns_by_first, self.w.pattern_firsts
        self.symptoms = {symptom.id: symptom for symptom in triage.symptoms}
        self._pairs: dict[str, set[tuple[str | None, str | None]]] | None = None
        # Catalogue phrases: label, aliases and id (also with spaces); a phrase shared by two
        # symptoms belongs to the higher one.
        phrases: dict[str, _Word] = {}
        ordered = sorted(enumerate(triage.symptoms), key=lambda item: (severity_rank(item[1].severity), item[0]))
        for _, symptom in ordered:
            for term in (symptom.label, *symptom.aliases, symptom.id, symptom.id.replace("_", " ")):
                text = self.normalize(term)
                if text and text not in phrases:
                    phrases[text] = _Word.of(text, _Entry("symptom", symptom.id, term))
        self.phrases = _Index(list(phrases.values()))

    @property
    def pairs(self) -> dict[str, set[tuple[str | None, str | None]]]:
        """(subject, manner) pairs each catalogue symptom stands for: its own phrases, read with the
        vocabulary (レポート生成が遅い → reports × slow)."""
        if self._pairs is None:
            self._pairs = {}
            for symptom in self.symptoms.values():
                found: set[tuple[str | None, str | None]] = set()
                for term in (symptom.label, *symptom.aliases):
                    found.update((r.subject, r.manner) for r in _Reader(self, term, phrases=False).readings())
                self._pairs[symptom.id] = found
        return self._pairs


# Compiled once per runbook object (the object is held, so its id is not reused). Validating a
# runbook compiles its vocabulary (to find duplicates once normalised); classifying reuses it.
_COMPILED: dict[int, tuple[Any, _Compiled]] = {}
_WORDS: dict[int, tuple[Any, _Words]] = {}


def _cached(cache: dict[int, tuple[Any, Any]], key: Any, build: Callable[[Any], Any]) -> Any:
    held = cache.get(id(key))
    if held is not None and held[0] is key:
        return held[1]
    built = build(key)
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[id(key)] = (key, built)
    return built


def _compiled_words(vocabulary: Vocabulary) -> _Words:
    return _cached(_WORDS, vocabulary, _Words)


def _compiled(triage: Triage) -> _Compiled:
    return _cached(_COMPILED, triage, _Compiled)


def vocabulary_problems(vocabulary: Vocabulary) -> list[str]:
    """What is wrong with a vocabulary once its words are normalised (for the runbook schema):
    "at KEY: reason" (e.g. the same word, written two ways, in two lists)."""
    return _compiled_words(vocabulary).problems


def normalize_report(text: str, runbook: Runbook | None = None) -> str:
    """The text as the vocabulary is matched on it: `normalize_text`, hyphens inside ASCII words as
    spaces, long vowel marks after katakana dropped, spaces between Japanese characters dropped,
    then the runbook's spelling variants (漏えい → 漏洩, can't → cannot)."""
    if runbook is None:
        return _base_normalize(text)
    return _compiled(runbook.triage).normalize(text)


# --- reading a report -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Hit:
    start: int
    end: int
    entry: _Entry
    clause: int
    parts: tuple[tuple[int, int], ...] = ()
    negated_by: str | None = None
    covered_by: _Hit | None = None
    absorbed: bool = False
    undone_by: str | None = None

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def live(self) -> bool:
        return self.negated_by is None and (self.covered_by is None or self.covered_by.negated_by is None)

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


@dataclass
class _Reading:
    """A candidate level: a catalogue phrase, or a subject and/or manner said together."""

    hits: list[_Hit]
    subject: str | None = None
    manner: str | None = None
    symptom: str | None = None  # a catalogue phrase
    level: str = "P2"
    steps: list[str] = field(default_factory=list)
    modifiers: list[_Hit] = field(default_factory=list)
    scope: str | None = None
    position: int = 0


class _Reader:
    def __init__(self, compiled: _Compiled, text: str, *, phrases: bool = True) -> None:
        self.c = compiled
        self.v = compiled.vocabulary
        self.with_phrases = phrases
        self.text = compiled.normalize(text)
        self.clause_starts = self._clause_starts()
        self.hits = self._hits()
        self._negate()
        self._undo_workarounds()
        self._absorb()

    # clauses and words

    def _clause_starts(self) -> list[int]:
        starts = {end for _, end, _ in self.c.breaks.find_all(self.text)}
        starts.update(match.end() for match in _CONTRAST_GA.finditer(self.text))
        return sorted(starts)

    def clause_of(self, position: int) -> int:
        return bisect.bisect_right(self.clause_starts, position)

    def _hits(self) -> list[_Hit]:
        text = self.text
        phrases = [_Hit(s, e, entry, self.clause_of(s)) for s, e, entry in self.c.phrases.scan(text)
                   if self.with_phrases]
        patterns = []
        for start, end, first in self.c.pattern_firsts.find_all(text):
            for pattern in self.c.patterns_by_first[first.key]:
                clause = self.clause_of(start)
                for second_start in range(end, min(len(text), end + VOCABULARY_PATTERN_GAP + 1)):
                    if self.clause_of(second_start) != clause:
                        break
                    second_end = pattern.second.match_at(text, second_start)
                    if second_end > 0:
                        patterns.append(_Hit(start, second_end, pattern.entry, clause,
                                             parts=((start, end), (second_start, second_end))))
                        break
        # A pattern overlapping a catalogue phrase is the phrase's.
        patterns = [p for p in patterns if not any(ph.overlaps(p.start, p.end) for ph in phrases)]
        words = []
        for start, end, entry in self.c.words.scan(text):
            if any(s < end and start < e for pattern in patterns for s, e in pattern.parts):
                continue  # the word is part of a pattern
            if entry.kind == "ignore":
                continue
            hit = _Hit(start, end, entry, self.clause_of(start))
            phrase = next((p for p in phrases if p.overlaps(start, end)), None)
            if phrase is not None:
                if entry.kind in _NEGATION or entry.kind == "undone":
                    continue  # a negation inside a catalogue phrase belongs to the phrase
                hit.covered_by = phrase
            words.append(hit)
        return sorted([*phrases, *patterns, *words], key=lambda hit: (hit.start, hit.end))

    # negation

    def _items(self, clause: int) -> list[_Hit]:
        """What a negation can deny in a clause: phrases and the words not inside a phrase."""
        return [hit for hit in self.hits if hit.clause == clause and hit.covered_by is None]

    def _negate(self) -> None:
        for cue in [hit for hit in self.hits if hit.kind in _NEGATION and hit.covered_by is None]:
            items = self._items(cue.clause)
            if cue.kind in ("negation_after", "negation_fine"):
                before = [item for item in items if item.end <= cue.start and item is not cue]
                first = True
                for item in reversed(before):
                    if item.kind in _NEGATION or item.kind == "undone":
                        break
                    if item.kind == "workaround" and cue.kind == "negation_fine":
                        break  # 「再試行すれば問題ない」: the workaround works
                    if item.kind in _MANNER_LIKE and not first:
                        break
                    if item.negated_by is None:
                        item.negated_by = cue.entry.word
                    first = False
            else:
                reach = cue.end
                for item in [item for item in items if item.start >= cue.end]:
                    if item.kind in _NEGATION or item.kind == "undone" or item.start - reach > _BEFORE_REACH:
                        break
                    if item.negated_by is None:
                        item.negated_by = cue.entry.word
                    reach = item.end
                    if item.kind in _MANNER_LIKE or item.kind == "scope":
                        break

    def _undo_workarounds(self) -> None:
        for hit in self.hits:
            if hit.kind == "workaround" and hit.live:
                undone = next((u for u in self.hits if u.kind == "undone" and u.clause == hit.clause and u.live), None)
                if undone is not None:
                    hit.undone_by = undone.entry.word

    def _absorb(self) -> None:
        for hit in self.hits:
            if hit.kind != "subject" or not hit.live or hit.covered_by is not None:
                continue
            gives_way = self.v.subjects[hit.key].gives_way_to
            for other in self.hits:
                if other is hit or other.kind != "subject" or not other.live or other.clause != hit.clause:
                    continue
                if self.v.subjects[other.key].aspect:
                    # ボタンの色, ログイン画面のアイコン: what comes before a look is where it is; but
                    # 画像のアップロード is an upload (an aspect said first takes nothing over).
                    if other.key != hit.key and 0 <= other.start - hit.end <= _ADJACENT:
                        hit.absorbed = True
                        break
                    continue
                if other.key not in gives_way:
                    continue
                gap = other.start - hit.end if other.start >= hit.end else hit.start - other.end
                if 0 <= gap <= _ADJACENT:
                    hit.absorbed = True
                    break

    # readings

    def live(self, kind: str) -> list[_Hit]:
        return [hit for hit in self.hits if hit.kind == kind and hit.live]

    def readings(self) -> list[_Reading]:
        readings: list[_Reading] = []
        clauses = sorted({hit.clause for hit in self.hits})
        phrases: dict[int, list[_Hit]] = {c: [] for c in clauses}
        subjects: dict[int, list[_Hit]] = {c: [] for c in clauses}
        manners: dict[int, list[_Hit]] = {c: [] for c in clauses}
        covered_by: dict[int, list[_Hit]] = {}
        for hit in self.hits:
            if not hit.live:
                continue
            if hit.covered_by is not None:
                covered_by.setdefault(id(hit.covered_by), []).append(hit)
            elif hit.kind == "symptom":
                phrases[hit.clause].append(hit)
            elif hit.kind == "subject" and not hit.absorbed:
                subjects[hit.clause].append(hit)
            elif hit.kind == "manner":
                manners[hit.clause].append(hit)
        for clause in clauses:
            for phrase in phrases[clause]:
                covered = covered_by.get(id(phrase), [])
                where = subjects[clause] if not manners[clause] else []
                readings.append(_Reading([phrase, *covered, *where], symptom=phrase.key, position=phrase.start))
        orphan_subjects = [c for c in clauses if subjects[c] and not manners[c] and not phrases[c]]
        orphan_manners = [c for c in clauses if manners[c] and not subjects[c]]

        def nearest(clause: int, pool: list[int], prefer_after: bool) -> int | None:
            after = [c for c in pool if c > clause]
            before = [c for c in pool if c < clause]
            first = (after[:1], before[-1:]) if prefer_after else (before[-1:], after[:1])
            for side in first:
                if side:
                    return side[0]
            return None

        # A subject may say how the manners of its clause read (a logo that is "wrong" looks wrong).
        treat: dict[int, dict[str, tuple[str, _Hit]]] = {c: {} for c in clauses}
        for hit in self.live("subject"):
            for source, target in self.v.subjects[hit.key].treat_as.items():
                treat[hit.clause].setdefault(source, (target, hit))
        with_manners = [c for c in clauses if manners[c]]
        pairs: list[tuple[_Hit | None, _Hit | None]] = []
        for clause in clauses:
            clause_subjects: list[_Hit | None] = list(subjects[clause])
            clause_manners: list[_Hit | None] = list(manners[clause])
            if clause in orphan_subjects:
                source = nearest(clause, with_manners, prefer_after=True)
                clause_manners = list(manners[source]) if source is not None else [None]
            elif clause in orphan_manners:
                source = nearest(clause, orphan_subjects, prefer_after=False)
                clause_subjects = list(subjects[source]) if source is not None else [None]
            elif not clause_subjects or not clause_manners:
                continue
            for subject in clause_subjects:
                for manner in clause_manners:
                    pairs.append((subject, manner))
        seen: set[tuple[str | None, str | None]] = set()
        for subject, manner in pairs:
            manner_key, note = manner.key if manner else None, None
            if manner is not None and manner.key in treat[manner.clause]:
                manner_key, by = treat[manner.clause][manner.key]
                note = (f"{by.entry.word}: {self.v.manners[manner.key].label} counts as "
                        f"{self.v.manners[manner_key].label}")
            key = (subject.key if subject else None, manner_key)
            if key in seen:
                continue
            seen.add(key)
            if subject is None and (manner_key is None or manner_key not in self.v.no_subject):
                if manner_key is None or self.v.manners[manner_key].level is None:
                    continue  # a vague manner alone (「何かおかしい」) says too little
            hits = [h for h in (subject, manner) if h is not None]
            readings.append(_Reading(hits, subject=key[0], manner=manner_key, position=min(h.start for h in hits),
                                     steps=[note] if note else []))
        return readings


# --- levels ---------------------------------------------------------------------------------------


def _rank_level(rank: int) -> str:
    return SEVERITIES[max(0, min(rank, len(SEVERITIES) - 1))]


def _words(hits: list[_Hit]) -> str:
    return ", ".join(dict.fromkeys(hit.entry.word for hit in hits))


class _Leveler:
    def __init__(self, compiled: _Compiled, reader: _Reader) -> None:
        self.c = compiled
        self.v = compiled.vocabulary
        self.reader = reader
        self.scopes = reader.live("scope")
        workaround = [h for h in reader.live("workaround") if h.undone_by is None]
        self.workaround = workaround[0] if workaround and self.v.workaround is not None else None

    def _grave(self, reading: _Reading) -> bool:
        for hit in reading.hits:
            if hit.kind == "manner" and self.v.manners[hit.key].grave:
                return True
            if hit.kind == "subject" and self.v.subjects[hit.key].grave:
                return True
        return False

    def _base(self, reading: _Reading, manner: str | None) -> tuple[str | None, str]:
        """(level, why) of a facet reading before scope and workaround."""
        v = self.v
        manner_class = v.manners.get(manner) if manner else None
        subject_class = v.subjects.get(reading.subject) if reading.subject else None
        if manner_class is not None and manner_class.level is not None:
            return manner_class.level, f"{manner_class.label} is always {manner_class.level}"
        if subject_class is not None and subject_class.level is not None:
            return subject_class.level, f"{subject_class.label} is always {subject_class.level}"
        if subject_class is not None:
            if manner is None:
                level = subject_class.levels["default"]
                return level, f"how it fails is not said → {level} (when unsure, the higher one)"
            level = subject_class.levels.get(manner, subject_class.levels["default"])
            return level, f"{subject_class.label} × {manner_class.label if manner_class else manner} → {level}"
        level = v.no_subject.get(manner) if manner else None
        if level is None:
            return None, ""
        return level, f"{manner_class.label if manner_class else manner}, what is affected is not said → {level}"

    def _apply(self, rank: int, hit: _Hit, label: str, *, at_least: str | None, at_most: str | None,
               lower: int, not_below: str | None, phrase: bool, minor: bool,
               steps: list[str], modifiers: list[_Hit]) -> int:
        new = rank
        if at_least is not None and not phrase and not minor:
            new = min(new, severity_rank(at_least))
        if lower:
            floor = max(new, severity_rank(not_below)) if not_below is not None else len(SEVERITIES) - 1
            new = min(new + lower, floor)
        if at_most is not None:
            new = max(new, severity_rank(at_most))
        if new != rank:
            steps.append(f"{label} ({hit.entry.word}) → {_rank_level(new)}")
            modifiers.append(hit)
        return new

    def level(self, reading: _Reading, *, unmatched: str | None = None) -> _Reading:
        """Set the reading's level, steps and modifiers; the highest over the scopes said."""
        options = []
        for scope_hit in self.scopes or [None]:
            scope = self.v.scope[scope_hit.key] if scope_hit is not None else None
            options.append(self._level_under(reading, scope_hit, scope, unmatched))
        options = [o for o in options if o is not None]
        best = min(options, key=lambda o: severity_rank(o.level)) if options else None
        if best is None:
            reading.level = ""
            return reading
        return best

    def _level_under(self, reading: _Reading, scope_hit: _Hit | None, scope: Any,
                     unmatched: str | None) -> _Reading | None:
        steps: list[str] = list(reading.steps)
        modifiers: list[_Hit] = []
        phrase = reading.symptom is not None
        manner = reading.manner
        if unmatched is not None:
            level = unmatched
            steps.append(f"unmatched → {level} (when unsure, the higher one)")
        elif phrase:
            symptom = self.c.symptoms[reading.symptom]  # type: ignore[index]
            level = symptom.severity
            steps.append(f"symptom {symptom.id} ({symptom.label}) → {level}")
        else:
            if scope is not None and manner in scope.treat_as:
                target = scope.treat_as[manner]
                steps.append(f"{scope.label} ({scope_hit.entry.word}): "  # type: ignore[union-attr]
                             f"{self.v.manners[manner].label} counts as {self.v.manners[target].label}")
                modifiers.append(scope_hit)  # type: ignore[arg-type]
                manner = target
            base, why = self._base(reading, manner)
            if base is None:
                return None
            level = base
            steps.append(f"{_words(reading.hits)}: {why}")
        rank = severity_rank(level)
        grave = self._grave(reading) and rank == 0
        minor = bool(manner and self.v.manners[manner].minor)
        if grave:
            steps.append("data loss, leaks and security stay P1")
        else:
            if scope is not None:
                rank = self._apply(rank, scope_hit, scope.label, at_least=scope.at_least,  # type: ignore[arg-type]
                                   at_most=scope.at_most, lower=scope.lower, not_below=scope.not_below,
                                   phrase=phrase or unmatched is not None, minor=minor, steps=steps,
                                   modifiers=modifiers)
            workaround = self.v.workaround
            if self.workaround is not None and workaround is not None:
                rank = self._apply(rank, self.workaround, workaround.label, at_least=None, at_most=None,
                                   lower=workaround.lower, not_below=workaround.not_below, phrase=phrase,
                                   minor=minor, steps=steps, modifiers=modifiers)
        return replace(reading, level=_rank_level(rank), steps=steps, modifiers=modifiers, manner=manner,
                       scope=scope_hit.key if scope_hit is not None and scope_hit in modifiers else None)


# --- classify -------------------------------------------------------------------------------------


def _evidence(hit: _Hit) -> Evidence:
    return Evidence(hit.kind.split("_")[0], hit.key, hit.entry.word, hit.negated_by or hit.undone_by)


def _link(compiled: _Compiled, reading: _Reading, *, same_level: bool = True) -> str | None:
    """The catalogue symptom a reading stands for: a phrase's own; a class's explicit `symptom`; else
    the symptom whose own phrases read as the same subject and manner. With `same_level`, only when
    the levels agree (a partial outage is not 全ユーザーがアクセス不可)."""

    def agrees(symptom_id: str) -> bool:
        return not same_level or compiled.symptoms[symptom_id].severity == reading.level

    if reading.symptom is not None:
        return reading.symptom if agrees(reading.symptom) else None
    v = compiled.vocabulary
    classes = [v.manners.get(reading.manner) if reading.manner else None,
               v.subjects.get(reading.subject) if reading.subject else None]
    for item in classes:
        if item is not None and item.symptom and agrees(item.symptom):
            return item.symptom
    broad = reading.subject is not None and bool(v.subjects[reading.subject].gives_way_to)
    for symptom_id, pairs in compiled.pairs.items():
        if not agrees(symptom_id):
            continue
        if (reading.subject, reading.manner) in pairs or (broad and (None, reading.manner) in pairs):
            return symptom_id  # a broad subject (the backend) is what a phrase naming none means
        if reading.manner is None and reading.subject is not None and any(s == reading.subject for s, _ in pairs):
            return symptom_id
    return None


def _candidate_name(compiled: _Compiled, reading: _Reading) -> str:
    return _link(compiled, reading, same_level=False) or f"{reading.subject or '-'}:{reading.manner or '-'}"


def _impact(compiled: _Compiled, reading: _Reading, symptom_id: str | None, unmodified_phrase: bool) -> str | None:
    """The catalogue's impact when the reading stands for a symptom at its level with no scope
    word; else the scope and what is affected (一部のユーザー / ログイン・認証)."""
    if symptom_id and (unmodified_phrase or (reading.symptom is None and reading.scope is None)):
        return compiled.symptoms[symptom_id].impact
    v = compiled.vocabulary
    parts = []
    if reading.scope is not None:
        parts.append(v.scope[reading.scope].label)
    if reading.subject is not None:
        parts.append(v.subjects[reading.subject].label)
    elif reading.symptom is not None:
        parts.append(compiled.symptoms[reading.symptom].impact.split(" / ")[-1])
    elif reading.manner is not None:
        parts.append(v.manners[reading.manner].label)
    if not parts and symptom_id:
        return compiled.symptoms[symptom_id].impact
    return " / ".join(parts) or None


def _classify_text(runbook: Runbook, text: str) -> Classification:
    compiled = _compiled(runbook.triage)
    reader = _Reader(compiled, text)
    leveler = _Leveler(compiled, reader)
    readings = [leveler.level(r) for r in reader.readings()]
    readings = [r for r in readings if r.level]
    matched = [_evidence(hit) for hit in reader.hits if hit.kind not in ("ignore", "undone") and hit.covered_by is None]
    denied = [hit for hit in reader.hits if hit.negated_by is not None]
    denied_note = "; not counted (denied): " + ", ".join(
        f"{hit.entry.word} ({hit.negated_by})" for hit in denied) if denied else ""

    if not readings:
        unmatched = leveler.level(_Reading([]), unmatched=runbook.triage.unmatched_severity)
        rule = "; ".join(unmatched.steps) + denied_note
        return Classification(
            severity=unmatched.level,
            rule=rule,
            symptom_id=None,
            symptom_label=text.strip() or None,
            impact=_impact(compiled, unmatched, None, False) if unmatched.modifiers else None,
            source="unmatched",
            evidence=[_evidence(hit) for hit in unmatched.modifiers],
            matched=matched,
        )

    # The highest reading; on a tie, a catalogue phrase, then the first said.
    readings.sort(key=lambda r: (severity_rank(r.level), r.symptom is None, r.position))
    chosen = readings[0]
    unmodified_phrase = chosen.symptom is not None and not chosen.modifiers
    symptom_id = _link(compiled, chosen)
    rule = "; ".join(chosen.steps)
    candidates = list(dict.fromkeys((_candidate_name(compiled, r), r.level) for r in readings))
    if len(candidates) > 1:
        listed = ", ".join(f"{name} {level}" for name, level in candidates)
        rule += f" (the highest of {len(candidates)} readings: {listed}; when unsure, the higher one)"
    rule += denied_note
    evidence = list(dict.fromkeys(_evidence(hit) for hit in [*chosen.hits, *chosen.modifiers]
                                  if hit.covered_by is None or hit.kind == "symptom"))
    if unmodified_phrase:
        label = compiled.symptoms[chosen.symptom].label  # type: ignore[index]
    else:
        label = text.strip() or None
    return Classification(
        severity=chosen.level,
        rule=rule,
        symptom_id=symptom_id,
        symptom_label=label,
        impact=_impact(compiled, chosen, symptom_id, unmodified_phrase),
        candidates=candidates,
        source="symptom" if chosen.symptom is not None else "facets",
        evidence=evidence,
        matched=matched,
    )


def _classify_alarm(runbook: Runbook, environment: str, alarm: Mapping[str, Any]) -> Classification:
    name = alarm.get("AlarmName")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("alarm needs a non-empty 'AlarmName'")
    env = runbook.environment(environment)
    mapping = next((entry for entry in env.alarms if entry.name == name), None)
    if mapping is not None:
        symptom_id, service, own_severity, where = mapping.symptom, mapping.service, mapping.severity, ""
    else:
        default = env.default_alarm
        symptom_id, service, own_severity = default.symptom, default.service, default.severity
        where = " (unmapped: default_alarm)"
    symptom = runbook.symptom(symptom_id)
    severity = own_severity or symptom.severity
    rule = f"alarm {name}{where} → {symptom.id} → {severity}"
    if own_severity is not None and own_severity != symptom.severity:
        rule += " (the alarm's own severity)"
    return Classification(
        severity=severity,
        rule=rule,
        symptom_id=symptom.id,
        symptom_label=symptom.label,
        impact=symptom.impact,
        candidates=[(symptom.id, severity)],
        source="alarm",
        service=service,
        evidence=[Evidence("alarm", symptom.id, name)],
    )


def _parse_override(override: str | None) -> str | None:
    if override is None or not override.strip():
        return None
    severity = override.strip().upper()
    if severity not in SEVERITIES:
        raise ValueError(f"override must be one of {', '.join(SEVERITIES)}, got {override!r}")
    return severity


def classify(
    runbook: Runbook,
    symptom: str | None = None,
    *,
    alarm: Mapping[str, Any] | None = None,
    environment: str = "production",
    override: str | None = None,
) -> Classification:
    """The severity of a report (`symptom` text) and/or a CloudWatch alarm; see the module rules."""
    forced = _parse_override(override)
    runbook.environment(environment)  # an unknown environment is a mistake even without an alarm
    from_text = _classify_text(runbook, symptom) if symptom is not None and symptom.strip() else None
    from_alarm = _classify_alarm(runbook, environment, alarm) if alarm is not None else None

    if from_alarm is None:
        result = from_text or _classify_text(runbook, "")
    elif from_text is None or from_text.source == "unmatched":
        result = from_alarm
    else:
        winner, other = (
            (from_text, from_alarm)
            if higher_severity(from_text.severity, from_alarm.severity) == from_text.severity
            else (from_alarm, from_text)
        )
        candidates = list(dict.fromkeys([*winner.candidates, *other.candidates]))
        result = replace(winner, candidates=candidates, service=from_alarm.service)

    if forced is None:
        return result
    return replace(
        result,
        severity=forced,
        rule=f"override by reporter → {forced} (the rules gave {result.severity}: {result.rule})",
        source="override",
    )


def fingerprint_for(environment: str, service: str, symptom_id: str | None, symptom_text: str,
                    alarm: dict[str, Any] | None) -> str:
    """One open incident per fingerprint: the alarm when there is one, else service + symptom."""
    if alarm and alarm.get("AlarmName"):
        return f"{environment}:alarm:{alarm['AlarmName']}"
    return f"{environment}:{service}:{symptom_id or normalize_text(symptom_text)[:80]}"
