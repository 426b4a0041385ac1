"""Deterministic extractive summariser and token counter for the provider simulator.

The simulator has to answer chat-completion requests without a model. Everything here is a
pure function of the input text so that the same batch always yields byte-identical answers
and usage figures, which is what tests, benchmarks and cache-hit demos rely on.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "REPLY_PRIMING_TOKENS",
    "Completion",
    "count_prompt_tokens",
    "count_tokens",
    "message_text",
    "simulate_completion",
    "split_sentences",
    "summarise",
]

# Per-message framing tokens (role markers, separators) in OpenAI chat formats.
MESSAGE_OVERHEAD_TOKENS = 4
# Every reply is primed with an assistant header, so prompts carry a small constant on top.
REPLY_PRIMING_TOKENS = 3

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
# Candidate sentence ends: terminal punctuation, optional closing quotes/brackets, whitespace.
_BOUNDARY_RE = re.compile(r"[.!?]+[\"')\]]*\s+")
_BLOCK_SPLIT_RE = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)")
_PARAGRAPH_SPLIT_RE = re.compile(r"\n\s*\n")
_LINE_SPLIT_RE = re.compile(r"\n")
_RANGE_SENTENCES_RE = re.compile(r"\b(\d+)\s*(?:-|\u2013|to)\s*(\d+)\s+sentences?\b", re.I)
_COUNT_SENTENCES_RE = re.compile(r"\b(\d+|one|two|three|four|five)\s+sentences?\b", re.I)
_SUMMARY_RE = re.compile(
    r"\b(summari[sz]e|summary|tl;?dr|condense|shorten|abstract|key points|gist)\b", re.I
)
_INSTRUCTION_RE = re.compile(
    r"\b(summari[sz]e|summary|tl;?dr|condense|shorten|abstract|key points|gist|"
    r"extract|rewrite|paraphrase|describe|explain|analy[sz]e|classify|translate|"
    r"the following|below)\b",
    re.I,
)


def _word_set(words: str) -> frozenset[str]:
    """Build a word set from a whitespace-separated literal (keeps long lists readable)."""
    return frozenset(words.split())


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# Words that end with a full stop without ending the sentence.
_ABBREVIATIONS = _word_set(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e inc ltd co corp fig no approx dept est"
)
_STOPWORDS = _word_set(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    may might must shall onto per via upon within without across among many much every
    """
)

# Upper bound on sentences in any summary; a summary longer than this is not a summary.
_MAX_SUMMARY_SENTENCES = 5
# Prompts at or below both limits, with no instruction line, are treated as questions.
_QUESTION_MAX_WORDS = 40
_QUESTION_MAX_SENTENCES = 2


@dataclass(frozen=True, slots=True)
class Completion:
    """A simulated assistant reply: its text and the OpenAI ``finish_reason``."""

    content: str
    finish_reason: str


def count_tokens(text: str) -> int:
    """Approximate a BPE tokenizer's token count for ``text``, deterministically.

    Counts ``\\w+`` runs and single punctuation marks; words longer than six characters
    are weighted by 1.3 (rounded up over the whole text) because BPE vocabularies split
    long words into several pieces.
    """
    short = 0
    long_words = 0
    for token in _TOKEN_RE.findall(text):
        # Punctuation tokens are single characters, so only word tokens can be this long.
        if len(token) > 6:
            long_words += 1
        else:
            short += 1
    return short + math.ceil(long_words * 1.3)


def split_tokens(text: str) -> list[str]:
    """The tokens ``count_tokens`` counts (each long word once), in order."""
    return _TOKEN_RE.findall(text)


def message_text(content: object) -> str:
    """Return the plain text of a chat message ``content`` field.

    Accepts the string form and the list-of-parts form (``[{"type": "text", "text": ...}]``);
    non-text parts are ignored and anything else yields an empty string.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def count_prompt_tokens(messages: Sequence[Mapping[str, object]]) -> int:
    """Count prompt tokens for a chat request: contents plus per-message and reply overhead."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + count_tokens(message_text(message.get("content")))
    return total


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with whitespace collapsed.

    Blank lines and list bullets always end a sentence; inside a block, a sentence ends at
    ``.``, ``!`` or ``?`` followed by whitespace and an upper-case letter, digit or quote,
    unless the word before the full stop is a known abbreviation or a single initial.
    """
    sentences: list[str] = []
    for block in _BLOCK_SPLIT_RE.split(text):
        flat = " ".join(block.split())
        start = 0
        for match in _BOUNDARY_RE.finditer(flat):
            end = match.end()
            if end < len(flat) and not (flat[end].isupper() or flat[end] in "\"'(0123456789"):
                continue
            preceding = flat[start : match.start() + 1].split()
            last_word = preceding[-1].rstrip(".").lower() if preceding else ""
            if match.group().startswith(".") and (
                last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())
            ):
                continue
            sentence = flat[start:end].strip()
            if sentence:
                sentences.append(sentence)
            start = end
        tail = flat[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


def _content_words(sentence: str) -> list[str]:
    words = (word.strip("'-").lower() for word in _WORD_RE.findall(sentence))
    return [word for word in words if len(word) > 1 and word not in _STOPWORDS]


def _score_sentences(sentences: Sequence[str]) -> list[float]:
    """Score by summed normalised word frequency plus a bonus for leading sentences."""
    words_per_sentence = [_content_words(sentence) for sentence in sentences]
    frequencies = Counter(word for words in words_per_sentence for word in words)
    top = max(frequencies.values(), default=1)
    raw = [sum(frequencies[word] / top for word in words) for words in words_per_sentence]
    # Leads carry the thesis in most prose (news, abstracts, reports), so favour them a bit.
    scale = max(raw, default=0.0) or 1.0
    bonuses = (0.3, 0.15, 0.05)
    return [
        score + (bonuses[index] * scale if index < len(bonuses) else 0.0)
        for index, score in enumerate(raw)
    ]


def _default_sentence_budget(sentence_count: int) -> int:
    if sentence_count <= 3:
        return 1
    if sentence_count <= 6:
        return 2
    return 3


def _requested_sentences(instruction: str) -> int | None:
    """Read "in 2-3 sentences" / "in one sentence" from an instruction, taking the upper bound."""
    ranged = _RANGE_SENTENCES_RE.search(instruction)
    if ranged:
        return max(1, min(int(ranged.group(2)), _MAX_SUMMARY_SENTENCES))
    single = _COUNT_SENTENCES_RE.search(instruction)
    if single:
        word = single.group(1).lower()
        count = _NUMBER_WORDS.get(word) or int(word)
        return max(1, min(count, _MAX_SUMMARY_SENTENCES))
    return None


def _truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Cut ``text`` at a word boundary so that it fits into ``max_tokens``."""
    words = text.split()
    low, high = 0, len(words)
    # Token count is monotonic in the number of leading words, so binary search the cut.
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])


def _fit_to_budget(text: str, max_tokens: int | None) -> Completion:
    if max_tokens is not None and count_tokens(text) > max_tokens:
        return Completion(_truncate_to_tokens(text, max(max_tokens, 1)), "length")
    return Completion(text, "stop")


def _summarise(text: str, max_sentences: int | None, max_tokens: int | None) -> Completion:
    sentences = split_sentences(text)
    if not sentences:
        return Completion("", "stop")
    budget = (
        max_sentences if max_sentences is not None else _default_sentence_budget(len(sentences))
    )
    budget = max(1, min(budget, len(sentences)))
    scores = _score_sentences(sentences)
    # Ties go to the earlier sentence so the choice never depends on sort stability.
    ranked = sorted(range(len(sentences)), key=lambda index: (-scores[index], index))
    chosen = sorted(ranked[:budget])
    summary = " ".join(sentences[index] for index in chosen)
    if max_tokens is None:
        return Completion(summary, "stop")
    while len(chosen) > 1 and count_tokens(summary) > max_tokens:
        weakest = min(chosen, key=lambda index: (scores[index], -index))
        chosen.remove(weakest)
        summary = " ".join(sentences[index] for index in chosen)
    # Dropping whole sentences is a normal "stop"; only a cut inside one is a "length" stop.
    return _fit_to_budget(summary, max_tokens)


def summarise(
    text: str,
    *,
    max_sentences: int | None = None,
    max_tokens: int | None = None,
) -> str:
    """Return a deterministic extractive summary of ``text``.

    Picks the highest-scoring sentences (1 for up to 3 sentences, 2 for up to 6, else 3,
    unless ``max_sentences`` says otherwise) and returns them in their original order.
    With ``max_tokens``, lower-ranked sentences are dropped until the summary fits; a
    single sentence that is still too long is cut at a word boundary.
    """
    return _summarise(text, max_sentences, max_tokens).content


def _looks_like_instruction(paragraph: str) -> bool:
    words = paragraph.split()
    if not words or len(words) > 60:
        return False
    return paragraph.rstrip().endswith(":") or bool(_INSTRUCTION_RE.search(paragraph))


def _split_instruction(prompt: str) -> tuple[str | None, str]:
    """Separate a leading instruction paragraph (or line) from the document it refers to."""
    stripped = prompt.strip()
    for splitter in (_PARAGRAPH_SPLIT_RE, _LINE_SPLIT_RE):
        parts = splitter.split(stripped, maxsplit=1)
        if len(parts) == 2 and parts[1].strip() and _looks_like_instruction(parts[0]):
            return parts[0].strip(), _strip_fences(parts[1])
    return None, stripped


def _strip_fences(document: str) -> str:
    """Drop quote/code fences and a leading "Document:" label wrapped around a document."""
    lines = [line for line in document.strip().splitlines() if line.strip() not in {'"""', "```"}]
    body = "\n".join(lines).strip()
    return re.sub(r"^(?:document|text|article)\s*:\s*", "", body, flags=re.I)


def _answer(question: str, model: str, max_tokens: int | None) -> Completion:
    """Build a short, plausible and deterministic answer to a plain question prompt."""
    sentences = split_sentences(question)
    if not sentences:
        return _fit_to_budget(f"Answer (simulated by {model}): no question was given.", max_tokens)
    if len(sentences) == 1:
        focus = sentences[0]
    else:
        scores = _score_sentences(sentences)
        focus = sentences[min(range(len(sentences)), key=lambda index: (-scores[index], index))]
    keywords: list[str] = []
    seen: set[str] = set()
    for word in _WORD_RE.findall(focus):
        cleaned = word.strip("'-")
        lowered = cleaned.lower()
        if lowered not in _STOPWORDS and lowered not in seen:
            seen.add(lowered)
            keywords.append(cleaned)
    text = f"Answer (simulated by {model}): {focus}"
    if keywords:
        text += f" In brief: {', '.join(keywords[:3])}."
    return _fit_to_budget(text, max_tokens)


def simulate_completion(
    messages: Sequence[Mapping[str, object]],
    model: str,
    max_tokens: int | None = None,
) -> Completion:
    """Produce the simulated assistant reply for a chat-completion request.

    The last user message is the prompt. An instruction paragraph before a document
    ("Summarise the following ...\\n\\n<document>"), or an instruction in the system message,
    selects summary mode on the document; a short prompt without one is answered as a
    question; any other long text is summarised. ``finish_reason`` is ``"length"`` only
    when ``max_tokens`` forced a cut mid-sentence.
    """
    user_texts = [
        message_text(message.get("content"))
        for message in messages
        if message.get("role") == "user"
    ]
    prompt = next((text for text in reversed(user_texts) if text.strip()), "")
    system = "\n".join(
        message_text(message.get("content"))
        for message in messages
        if message.get("role") in {"system", "developer"}
    )
    instruction, document = _split_instruction(prompt)
    if instruction is None and _SUMMARY_RE.search(system):
        instruction = system
    is_summary_task = instruction is not None and bool(_SUMMARY_RE.search(instruction))
    is_short = (
        len(document.split()) <= _QUESTION_MAX_WORDS
        and len(split_sentences(document)) <= _QUESTION_MAX_SENTENCES
    )
    if not is_summary_task and is_short:
        return _answer(prompt, model, max_tokens)
    requested = _requested_sentences(instruction) if instruction else None
    completion = _summarise(document, requested, max_tokens)
    return completion if completion.content else _answer(prompt, model, max_tokens)
