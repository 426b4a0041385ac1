"""The second checks, and the evaluation's scoring, on small texts written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cache import verify
from app.cache.datasets import read_pairs
from app.cache.scoring import Outcome, recall_at_fhr, score

STORY = (
    "Nearly two million people across Asia could be thrown into poverty because of the "
    "tsunami, the Asian Development Bank said on Thursday. In its first overview of the "
    "disaster, the bank said the impact on economic growth would be slight because major "
    "cities and factories escaped damage. Donor nations have promised 717 million dollars "
    "in relief over the next six months, according to the United Nations. Ifzal Ali, the "
    "bank's chief economist, said aid pledges must be delivered promptly. There are 1.9 "
    "billion people in Asia living on less than two dollars a day."
)
SAME_TOPIC = (
    "The tsunami will push up to two million people in Asia into poverty, economists at the "
    "Asian Development Bank warned. The bank expects growth across the region to suffer only "
    "slightly because the main industrial centres were not hit. The United Nations said "
    "donors have pledged 717 million dollars. Relief agencies in Sri Lanka said the money "
    "must arrive quickly to avoid outbreaks of disease in the camps along the coast, where "
    "more than 400,000 people are living in tents."
)


def test_the_same_document_reformatted_or_retitled_is_the_same() -> None:
    assert verify.same_document(STORY, STORY).same
    assert verify.same_document(STORY, "  " + STORY.replace(". ", ".\n\n")).same
    assert verify.same_document(STORY, "ASIA QUAKE RAISES POVERTY RISK\n\n" + STORY).same
    added = STORY + " The bank will publish a fuller assessment next month."
    assert verify.same_document(STORY, added).same


def test_another_article_on_the_same_story_is_not_the_same() -> None:
    check = verify.same_document(STORY, SAME_TOPIC)
    assert not check.same
    assert "text differs" in check.reason


def test_a_changed_figure_makes_a_different_document() -> None:
    changed = STORY.replace("717 million", "917 million")
    check = verify.same_document(STORY, changed)
    assert not check.same
    assert "numbers differ" in check.reason


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("717 million", "718 million"),  # an amount
        ("on Thursday", "on 3 March"),  # a date added where a weekday was: still a change
        ("1.9 billion", "1.8 billion"),  # a decimal
        ("Nearly two million", "Nearly three million"),  # a number in words
        ("six months", "seven months"),
    ],
)
def test_any_changed_figure_makes_a_different_document(old: str, new: str) -> None:
    changed = STORY.replace(old, new)
    assert changed != STORY
    check = verify.same_document(STORY, changed)
    assert not check.same
    assert check.failed == "numbers"


def test_a_figure_changed_to_one_found_elsewhere_in_the_text_is_still_a_change() -> None:
    # "717" -> "1.9": the set of figures shrinks (no figure only on the new side), but the
    # sequence shows the figure changed in place
    changed = STORY.replace("717 million", "1.9 million")
    assert verify.numbers(changed) <= verify.numbers(STORY)
    check = verify.same_document(STORY, changed)
    assert not check.same
    assert "717 -> 1.9" in check.reason


def test_scores_dates_and_percentages_in_a_report() -> None:
    report = (
        "Arsenal beat Chelsea 2-1 on 12 March 2005 in front of 38,000 fans. Turnout rose 4.5% "
        "on last season, the club said, and ticket prices will rise by 3% in April. "
    ) * 8
    assert verify.same_document(report, report + " Reporting by the sports desk.").same
    for old, new in (("2-1", "3-1"), ("12 March", "12 April"), ("4.5%", "5.5%"),
                     ("38,000", "39,000"), ("2005", "2006")):  # fmt: skip
        check = verify.same_document(report, report.replace(old, new, 1))
        assert not check.same, (old, new)
        assert check.failed == "numbers"


def test_the_decision_names_the_check_that_failed() -> None:
    assert verify.same_document(STORY, STORY).failed == ""
    assert verify.same_document(STORY, SAME_TOPIC).failed == "text"
    assert verify.same_document(STORY, STORY[: len(STORY) // 2]).failed == "length"


def test_a_different_person_makes_a_different_document() -> None:
    text = " ".join(["Mayor Helen Park opened the bridge in Leeds on Monday."] * 6)
    other = text.replace("Helen Park", "Tom Baker").replace("Leeds", "Derby")
    assert verify.same_document(text, text).same
    assert not verify.same_document(text, other).same


def test_a_revised_story_quoting_someone_else_is_not_the_same() -> None:
    # Most of the text is kept, but the quote is another person's: names gone on one side,
    # new ones on the other (two versions of one BBC story were this in bench.trace).
    revised = STORY.replace("according to the United Nations", "said Jan Egeland of Oxfam")
    check = verify.same_document(STORY, revised)
    assert check.shingle_jaccard >= verify.MIN_SHINGLE_JACCARD  # the text check alone passes
    assert check.failed == "names"
    assert "removed" in check.reason
    # A syndicated copy only adds names (a dateline, a credit): still the same document.
    syndicated = f"GENEVA (Wire Service) - {STORY}\n\nThis article first appeared on Wire Service."
    assert verify.same_document(STORY, syndicated).same


def test_a_much_shorter_document_is_not_the_same() -> None:
    check = verify.same_document(STORY, STORY[: len(STORY) // 2])
    assert not check.same
    assert "lengths differ" in check.reason


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("How do I learn Python?", "How can I learn Python?", True),
        ("Is 7 a prime number?", "Is 9 a prime number?", False),
        ("Can I drink coffee while pregnant?", "Can't I drink coffee while pregnant?", False),
        ("Should I never skip breakfast?", "Should I skip breakfast?", False),
        ("What did Einstein discover?", "What did Newton discover?", False),
    ],
)
def test_short_prompt_rules(a: str, b: str, same: bool) -> None:
    assert verify.same_prompt(a, b) is same


def test_pairs_read_same_or_sts_scores(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"a": "x", "b": "y", "same": True},
        {"a": "x", "b": "z", "score": 4.4},
        {"a": "x", "b": "w", "score": 3.0},  # neither: skipped
        {"a": "x", "b": "v", "score": 1.0},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [p.same for p in read_pairs(path)] == [True, True, False]
    path.write_text('{"a": "only a"}\n')
    with pytest.raises(ValueError, match=r"pairs\.jsonl:1"):
        read_pairs(path)


def test_scoring_counts_wrong_entries_and_false_hits() -> None:
    lookups = [
        Outcome(same=True, candidates=[(0.97, True, True)]),  # correct hit
        Outcome(same=True, candidates=[(0.95, False, True)]),  # another pair's entry: wrong
        Outcome(same=False, candidates=[(0.96, True, False), (0.91, False, True)]),
        Outcome(same=False, candidates=[(0.80, True, True)]),
        Outcome(same=True, exact_own=True),
    ]
    verified = score(lookups, threshold=0.9, verified=True)
    assert (verified.hits, verified.correct, verified.wrong_on_negatives) == (4, 2, 1)
    assert verified.recall == pytest.approx(2 / 3)
    assert verified.false_hit_rate == pytest.approx(1 / 2)
    cosine = score(lookups, threshold=0.9, verified=False)
    assert (cosine.hits, cosine.correct, cosine.wrong_on_negatives) == (4, 2, 1)
    # with no false hit allowed, the best threshold lies above 0.96 (cosine) / 0.91 (verified)
    assert recall_at_fhr(lookups, verified=False, target=0.0) == pytest.approx(2 / 3)
    assert recall_at_fhr(lookups, verified=True, target=0.0) == pytest.approx(2 / 3)
