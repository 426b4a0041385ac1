"""The trace benchmark's workload: a bulk submission stream built from the shared data.

Every item knows what it is (``kind``) and which answer it legitimately shares (``cls``: two
items of one class may be answered once; a hit between two classes is a wrong hit). Kinds:

- ``article``: a news article to summarise under one of three long house-style system prompts;
- ``resubmission``: an earlier article sent again, whole, in a later submission (same class);
- ``duplicate``: an article twice in one submission (same class);
- ``syndicated``: an earlier article lightly edited (a dateline and a credit added, a few
  words changed, every figure and name kept): the same document (same class);
- ``same_topic``: a different article of the same category as an earlier one (new class);
- ``changed_numbers``: an earlier article with one figure changed (new class: its summary
  must not be reused);
- ``question`` / ``question_repeat``: short questions of mixed difficulty (MMLU, MT-Bench and
  Vicuna, Arena-Hard), under one long assistant system prompt, some asked again later.

Deadlines: none for about half, else minutes, hours or a day and a bit after submission.
Submissions of 20-200 items, spread over the run.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Shares of the trace (the rest are new articles).
SHARES = {
    "resubmission": 0.10,
    "duplicate": 0.05,
    "syndicated": 0.08,
    "same_topic": 0.07,
    "changed_numbers": 0.05,
    "question": 0.18,
    "question_repeat": 0.03,
}
# Deadline choices in seconds after submission (None: no deadline) and their weights.
DEADLINES: list[tuple[tuple[float, float] | None, float]] = [
    (None, 0.45),
    ((5 * 60, 30 * 60), 0.10),  # minutes
    ((1 * 3600, 12 * 3600), 0.15),  # hours
    ((26 * 3600, 36 * 3600), 0.30),  # a day and a bit: the Batch API's window fits
]
DESKS = ("business and economics", "sport", "politics, technology and culture")
_DIGITS = re.compile(r"\d+")
_SWAPS = [(" said ", " stated "), (" but ", " though "), (" also ", " additionally "),
          (" very ", " highly "), (" big ", " large "), (" started ", " began ")]  # fmt: skip


@dataclass
class Item:
    """One job of the trace, with what the trace knows about it."""

    index: int
    kind: str
    cls: str
    submission: int
    job: dict[str, Any]  # JobIn fields
    deadline_after: float | None = None
    source: int | None = None  # the item it repeats or derives from
    prefix: str | None = None  # the shared system prompt's name
    meta: dict[str, Any] = field(default_factory=dict)


def house_style(desk: str, rng: random.Random) -> str:
    """A long (well over 1,024 tokens) house-style system prompt for ``desk``."""
    rules = [
        "Lead with the single most important fact of the story, in one sentence.",
        "Keep every figure exactly as written in the article: amounts, dates, scores, ages.",
        "Name people with their role the first time they appear.",
        "Attribute every claim to its source; never present a claim as fact.",
        "Prefer short sentences and the active voice.",
        "Do not speculate beyond what the article reports.",
        "Spell out abbreviations on first use unless they are better known abbreviated.",
        "Use British spelling and the serial comma only where it prevents ambiguity.",
        "Write money as the currency symbol followed by the amount.",
        "Avoid adjectives that judge: describe what happened instead.",
        "End with what happens next, if the article says.",
        "Never copy more than eight consecutive words from the article.",
    ]
    lines = [f"You are a senior sub-editor on the {desk} desk of an international news "
             "agency. You write summaries that subscribers publish unchanged, so accuracy "
             "matters more than style. Follow this house style guide exactly.", ""]  # fmt: skip
    for section in range(1, 7):
        lines.append(f"Section {section}: rules for {desk} copy, part {section}.")
        for number, rule in enumerate(rng.sample(rules, len(rules)), start=1):
            lines.append(f"{section}.{number} {rule}")
        lines.append("")
    lines.append("Answer with the summary only: no heading, no preamble, no sign-off.")
    return "\n".join(lines)


_TOPICS = ["mathematics", "software", "history", "law", "medicine", "finance", "physics",
           "chemistry", "writing", "travel", "management", "statistics"]  # fmt: skip
ASSISTANT = (
    "You are the help desk assistant of a large engineering company. Answer questions from "
    "staff accurately and briefly. "
    + " ".join(
        f"Policy {n}: when a question touches {topic}, state your assumptions, give the answer "
        "first and the reasoning after it, and say plainly when you are not sure."
        for n, topic in enumerate(_TOPICS * 3, start=1)
    )
)


def _rows(path: Path) -> list[dict[str, Any]]:
    # split on newlines only: the texts hold U+2028, which splitlines() would cut at
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def load_articles(data: Path) -> list[dict[str, str]]:
    """BBC articles (with their category as topic) of 800-6,000 characters that hold a figure."""
    found: list[dict[str, str]] = []
    for row in _rows(data / "docs" / "bbc_news_dev.jsonl"):
        text = str(row.get("text") or "").strip()
        if 800 <= len(text) <= 6000 and _DIGITS.search(text):
            found.append({"id": str(row["id"]), "topic": str(row["category"]),
                          "text": f"{row['title']}\n\n{text}"})  # fmt: skip
    return list({a["text"]: a for a in found}.values())


def load_questions(data: Path) -> list[tuple[str, str]]:
    """(difficulty, question): MMLU (easy), MT-Bench and Vicuna (medium), Arena-Hard (hard)."""
    routing = data / "routing"
    out = [("easy", str(row["prompt"])) for row in _rows(routing / "routellm_mmlu_dev.jsonl")[::20]]
    for name in ("mt_bench_question.jsonl", "vicuna_bench_question.jsonl"):
        out += [("medium", str(row["turns"][0])) for row in _rows(routing / name)]
    for row in _rows(routing / "arena_hard_v2_questions.jsonl"):
        if len(str(row["prompt"])) <= 1500:
            out.append(("hard", str(row["prompt"])))
    return list({q: (d, q) for d, q in out}.values())


def syndicate(text: str, rng: random.Random) -> str:
    """A light edit that keeps the document: a dateline, a credit, a word or two changed."""
    edited = text
    for old, new in rng.sample(_SWAPS, 2):
        edited = edited.replace(old, new, 1)
    outlet = rng.choice(["Wire Service", "Daily Courier", "Evening Post", "Global Desk"])
    return f"LONDON ({outlet}) - {edited}\n\nThis article first appeared on {outlet}."


def change_a_number(text: str, rng: random.Random) -> str:
    """The same text with one figure changed in place."""
    matches = list(_DIGITS.finditer(text))
    match = rng.choice(matches)
    value = int(match.group())
    changed = str(value + rng.randint(1, 9))
    return text[: match.start()] + changed + text[match.end() :]


def deadline_after(rng: random.Random) -> float | None:
    choice = rng.choices([d for d, _ in DEADLINES], weights=[w for _, w in DEADLINES])[0]
    return None if choice is None else rng.uniform(*choice)


def build(jobs: int, *, seed: int, data: Path) -> list[list[Item]]:
    """The trace: ``jobs`` items in submissions, in order."""
    rng = random.Random(seed)
    articles = load_articles(data)
    rng.shuffle(articles)
    questions = load_questions(data)
    rng.shuffle(questions)
    styles = {desk: house_style(desk, random.Random(f"{seed}-{desk}")) for desk in DESKS}
    desk_of = {"business": DESKS[0], "sport": DESKS[1]}
    submissions: list[list[Item]] = []
    done: list[Item] = []  # items of earlier submissions
    fresh_questions = iter(questions)

    def fresh_article(topic: str | None = None) -> dict[str, str]:
        for at, article in enumerate(articles):
            if topic is None or article["topic"] == topic:
                return articles.pop(at)
        raise SystemExit(f"the data holds too few articles for {jobs} jobs")

    count = 0
    classes = 0

    def new_class() -> str:
        nonlocal classes
        classes += 1
        return f"c{classes}"

    # The corpus holds some articles twice, the same body under two headlines: those are one
    # article, so one class (a hit between them is right).
    body_class: dict[tuple[str, str], str] = {}

    def article_item(article: dict[str, str], kind: str, sub: int, text: str | None = None,
                     cls: str | None = None, source: int | None = None) -> Item:  # fmt: skip
        desk = desk_of.get(article["topic"], DESKS[2])
        job = {"document": text or article["text"], "instruction": "summarise",
               "system": styles[desk]}  # fmt: skip
        if cls is None:
            body = (job["document"].split("\n", 1)[-1].strip(), desk)
            cls = body_class.get(body) or body_class.setdefault(body, new_class())
        return Item(
            count,
            kind,
            cls,
            sub,
            job,
            deadline_after(rng),
            source,
            prefix=desk,
            meta={"article": article["id"], "topic": article["topic"]},
        )

    names = list(SHARES)
    weights = [SHARES[n] for n in names]
    while count < jobs:
        sub = len(submissions)
        size = min(jobs - count, rng.randint(20, 200))
        batch: list[Item] = []
        for _ in range(size):
            earlier_articles = [i for i in done if i.kind == "article"]
            earlier_questions = [i for i in done if i.kind == "question"]
            kind = rng.choices([*names, "article"], weights=[*weights, 1 - sum(weights)])[0]
            if kind in {"resubmission", "syndicated", "same_topic", "changed_numbers"} and (
                not earlier_articles
            ):
                kind = "article"
            if kind == "duplicate" and not any(i.kind == "article" for i in batch):
                kind = "article"
            if kind == "question_repeat" and not earlier_questions:
                kind = "question"
            item: Item
            if kind == "article":
                item = article_item(fresh_article(), kind, sub)
            elif kind in {"resubmission", "duplicate"}:
                pool = (
                    earlier_articles
                    if kind == "resubmission"
                    else [i for i in batch if i.kind == "article"]
                )
                original = rng.choice(pool)
                item = Item(count, kind, original.cls, sub, dict(original.job),
                            deadline_after(rng), original.index, original.prefix,
                            dict(original.meta))  # fmt: skip
            elif kind == "syndicated":
                original = rng.choice(earlier_articles)
                job = dict(original.job, document=syndicate(original.job["document"], rng))
                item = Item(count, kind, original.cls, sub, job, deadline_after(rng),
                            original.index, original.prefix, dict(original.meta))  # fmt: skip
            elif kind == "changed_numbers":
                original = rng.choice(earlier_articles)
                job = dict(original.job, document=change_a_number(original.job["document"], rng))
                item = Item(count, kind, new_class(), sub, job, deadline_after(rng),
                            original.index, original.prefix, dict(original.meta))  # fmt: skip
            elif kind == "same_topic":
                original = rng.choice(earlier_articles)
                article = fresh_article(original.meta["topic"])
                item = article_item(article, kind, sub, source=original.index)
            elif kind == "question":
                difficulty, text = next(fresh_questions)
                item = Item(count, kind, new_class(), sub, {"prompt": text, "system": ASSISTANT},
                            deadline_after(rng), prefix="assistant",
                            meta={"difficulty": difficulty})  # fmt: skip
            else:  # question_repeat
                original = rng.choice(earlier_questions)
                item = Item(count, kind, original.cls, sub, dict(original.job),
                            deadline_after(rng), original.index, original.prefix,
                            dict(original.meta))  # fmt: skip
            batch.append(item)
            count += 1
        submissions.append(batch)
        done.extend(batch)
    return submissions
