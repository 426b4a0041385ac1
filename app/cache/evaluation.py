"""`thrifty eval cache`: precision, recall and false-hit rate of the cache on labelled pairs.

Every ``a`` is stored as a cache entry of one throw-away tenant (embedded with the configured
embedder, written to Postgres with its vector); every ``b`` is then looked up through the
same path ingest uses: exact key, pgvector HNSW search within the tenant and scope, then the
verifier. All ``a`` entries share one scope, so a lookup can also land on another pair's
entry: that counts as a wrong answer.

Scoring, per lookup of ``b``:
- a *correct hit* returns the entry of its own ``a`` when the pair means the same;
- any other hit is a *wrong hit* (different meaning, or another pair's entry);
- precision = correct / all hits; recall = correct / same-meaning pairs;
- false-hit rate = different-meaning lookups that hit anything / different-meaning pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.cache import repository
from app.cache import service as cache_service
from app.embeddings.base import Embedder
from app.kit.text import normalise
from app.models import Job, Tenant

EVAL_TIER = "economy"
# Candidates are fetched down to this similarity so that one pass serves the whole sweep.
SWEEP_FLOOR = 0.5
SWEEP = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
EMBED_CHUNK = 256


@dataclass(frozen=True)
class LabelledPair:
    a: str
    b: str
    same: bool


def read_pairs(path: Path, *, limit: int | None = None) -> list[LabelledPair]:
    """Pairs from JSON lines with ``a``, ``b`` and ``same`` (bool) or ``score`` (0-5, STS):
    a score of 4 or more is the same meaning, 2 or less different, between is skipped."""
    pairs: list[LabelledPair] = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                a, b = str(row["a"]), str(row["b"])
                if "same" in row:
                    same = bool(row["same"])
                else:
                    score = float(row["score"])
                    if 2 < score < 4:
                        continue
                    same = score >= 4
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: expected a, b and same or score") from exc
            if normalise(a) and normalise(b):
                pairs.append(LabelledPair(a, b, same))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


# --- the near-duplicate document companion set ---------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass(frozen=True)
class Article:
    id: str
    topic: str
    title: str
    text: str


def read_articles(data_dir: Path) -> list[Article]:
    """BBC News (title, category, text) and CNN/DM + XSum articles from ``data_dir/docs``."""
    articles: list[Article] = []
    bbc = data_dir / "docs" / "bbc_news_dev.jsonl"
    if bbc.exists():
        for line in bbc.read_text().splitlines():
            row = json.loads(line)
            articles.append(Article(row["id"], f"bbc-{row['category']}", row["title"], row["text"]))
    other = data_dir / "docs" / "cnndm_xsum_with_references.jsonl"
    if other.exists():
        for line in other.read_text().splitlines():
            row = json.loads(line)
            first = _SENTENCE_END.split(row["article"].strip(), maxsplit=1)[0]
            articles.append(Article(row["id"], row["source"], first[:120], row["article"]))
    if not articles:
        raise FileNotFoundError(f"no articles under {data_dir / 'docs'}")
    # The BBC set holds some articles twice under two ids: keep one, or a "different
    # article" could be the very same text.
    unique: dict[str, Article] = {}
    for article in articles:
        unique.setdefault(" ".join(article.text.lower().split()), article)
    return list(unique.values())


def _edits(article: Article, donor: Article, rng: random.Random) -> list[str]:
    """Lightly edited copies, as syndication and resubmission produce them."""
    body = article.text.strip()
    sentences = _SENTENCE_END.split(body)
    # one sentence of another article (cut to 40 words where sentences are not split well)
    donor_sentence = " ".join(_SENTENCE_END.split(donor.text.strip())[0].split()[:40])
    spaced = re.sub(r" ", lambda _: "  " if rng.random() < 0.05 else " ", body)
    position = rng.randrange(1, max(2, len(sentences)))
    inserted = " ".join([*sentences[:position], donor_sentence, *sentences[position:]])
    return [
        # whitespace: paragraphs re-flowed, stray double spaces
        f"{article.title}\n\n" + spaced.replace("\n\n", "\n").replace("\n", " \n"),
        # a changed headline
        f"UPDATED: {article.title.upper()} - latest\n\n{body}",
        # an added sentence, from another article
        f"{article.title}\n\n{inserted}",
        # syndication furniture around the same text
        f"{article.title}\n\n(Syndicated) {body}\n\nThis article was republished from the "
        "original with permission. Share this story.",
    ]


def companion_pairs(
    data_dir: Path,
    *,
    embedder: Embedder,
    limit: int | None = None,
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> list[LabelledPair]:
    """Near-duplicate document pairs: edited copies of an article (same) and, for articles
    kept out of the store, the most similar stored article on the same topic (different)."""
    rng = random.Random(seed)
    articles = [a for a in read_articles(data_dir) if len(a.text.split()) >= 80]
    rng.shuffle(articles)
    if limit is not None:
        articles = articles[: max(4, limit)]
    stored, unstored = articles[::2], articles[1::2]
    say(f"companion set: {len(stored)} stored articles, {len(unstored)} others on the same topics")
    vectors = _embed_all(embedder, [_document(a) for a in articles], say=say)
    by_id = {a.id: v for a, v in zip(articles, vectors, strict=True)}
    pairs: list[LabelledPair] = []
    for article in stored:
        donor = rng.choice(unstored)
        for copy in _edits(article, donor, rng):
            pairs.append(LabelledPair(_document(article), copy, True))
    stored_by_topic: dict[str, list[Article]] = {}
    for article in stored:
        stored_by_topic.setdefault(article.topic, []).append(article)
    for article in unstored:
        pool = stored_by_topic.get(article.topic) or stored
        sims = np.array([float(by_id[s.id] @ by_id[article.id]) for s in pool])
        nearest = pool[int(sims.argmax())]
        pairs.append(LabelledPair(_document(nearest), _document(article), False))
    return pairs


def _document(article: Article) -> str:
    return f"{article.title}\n\n{article.text.strip()}"


def _embed_all(
    embedder: Embedder, texts: list[str], *, say: Callable[[str], None]
) -> list[np.ndarray]:
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), EMBED_CHUNK):
        rows.extend(embedder.embed(texts[start : start + EMBED_CHUNK]))
        if (start // EMBED_CHUNK) % 10 == 9:
            say(f"  embedded {min(start + EMBED_CHUNK, len(texts))}/{len(texts)}")
    return rows


# --- running the lookups -------------------------------------------------------------------


@dataclass
class Lookup:
    same: bool
    exact_own: bool = False  # the exact layer answered with the pair's own entry
    exact_other: bool = False
    # (similarity, is own entry, accepted by the verifier), best first
    candidates: list[tuple[float, bool, bool]] = field(default_factory=list)


def _request(kind: str, text: str) -> Job:
    """A transient job carrying what the cache reads (never added to a session)."""
    if kind == cache_service.DOCUMENT:
        return Job(document=text, instruction="summarise", prompt=None, system=None,
                   max_output_tokens=None, temperature=None, cache_mode="default")  # fmt: skip
    return Job(prompt=text, document=None, instruction=None, system=None,
               max_output_tokens=None, temperature=None, cache_mode="default")  # fmt: skip


def run_lookups(
    session: Session,
    *,
    pairs: list[LabelledPair],
    kind: str,
    embedder: Embedder,
    verifier: cache_service.PromptVerifier,
    say: Callable[[str], None] = print,
    shared: bool = False,
) -> list[Lookup]:
    """Store every ``a`` in a new tenant, look up every ``b``; nothing is committed.

    By default each pair has a scope of its own, so ``b`` is compared with its own ``a``
    only (the figures are per pair); with ``shared`` every entry is in one scope and a
    lookup may land on another pair's entry, which counts as wrong unless it holds the very
    same text."""
    tenant = Tenant(name=f"eval-{uuid.uuid4()}")
    session.add(tenant)
    session.flush()
    try:
        return _run(session, tenant.id, pairs, kind, embedder, verifier, say, shared)
    finally:
        session.rollback()


def _pair_scope(base: str, index: int | None) -> str:
    if index is None:
        return base
    return hashlib.sha256(f"{base}:pair:{index}".encode()).hexdigest()


def _run(
    session: Session,
    tenant_id: uuid.UUID,
    pairs: list[LabelledPair],
    kind: str,
    embedder: Embedder,
    verifier: cache_service.PromptVerifier,
    say: Callable[[str], None],
    shared: bool,
) -> list[Lookup]:
    base = cache_service.scope_key(_request(kind, "x"), tier=EVAL_TIER)
    # (scope, cache key) -> normalised text; per pair, each pair has a scope of its own
    stored: dict[tuple[str, str], str] = {}
    for index, pair in enumerate(pairs):
        scope = _pair_scope(base, None if shared else index)
        key = _scoped_key(scope, cache_service.cache_key(_request(kind, pair.a), tier=EVAL_TIER))
        stored.setdefault((scope, key), normalise(pair.a))
    keys = list(stored)
    say(f"storing {len(keys)} entries (embedding with {embedder.name})")
    vectors = _embed_all(embedder, list(stored.values()), say=say)
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        repository.insert_many(
            session,
            [
                {
                    "id": uuid.uuid4(), "tenant_id": tenant_id, "cache_key": key,
                    "model": "eval", "result": stored[(scope, key)],
                    "source_job_id": uuid.uuid4(), "input_tokens": 0, "output_tokens": 0,
                    "hit_count": 0, "scope_key": scope, "kind": kind,
                    "request_text": stored[(scope, key)],
                    "embedding": [float(x) for x in vectors[start + i]],
                }
                for i, (scope, key) in enumerate(chunk)
            ],
        )  # fmt: skip
    session.flush()
    session.execute(text("ANALYZE cache_entries"))

    say(f"looking up {len(pairs)} requests")
    lookups: list[Lookup] = []
    query_vectors = _embed_all(embedder, [normalise(p.b) for p in pairs], say=say)
    repository.set_search_breadth(session, ef_search=_ef_search())
    for index, (pair, vector) in enumerate(zip(pairs, query_vectors, strict=True)):
        # the pair's own entry, or one with the very same text as the request, is right
        right = {normalise(pair.a), normalise(pair.b)} if pair.same else {normalise(pair.b)}
        scope = _pair_scope(base, None if shared else index)
        lookup = Lookup(same=pair.same)
        key = _scoped_key(scope, cache_service.cache_key(_request(kind, pair.b), tier=EVAL_TIER))
        exact = repository.find_many(session, tenant_id=tenant_id, keys=[key])
        if key in exact:
            own = exact[key].request_text in right
            lookup.exact_own, lookup.exact_other = own, not own
        else:
            found = repository.nearest(
                session,
                tenant_id=tenant_id,
                scope_key=scope,
                embedding=[float(x) for x in vector],
                limit=_candidates(),
                since=None,
            )
            candidates = [
                cache_service.Candidate(entry, sim) for entry, sim in found if sim >= SWEEP_FLOOR
            ]
            accepted = {
                id(c)
                for c in cache_service.verified(
                    kind=kind, text=normalise(pair.b), candidates=candidates, verifier=verifier
                )
            }
            lookup.candidates = [
                (c.similarity, c.entry.request_text in right, id(c) in accepted) for c in candidates
            ]
        lookups.append(lookup)
        if index % 2000 == 1999:
            say(f"  looked up {index + 1}/{len(pairs)}")
    return lookups


def _scoped_key(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()


def _ef_search() -> int:
    from app.config import get_settings

    return get_settings().cache_ef_search


def _candidates() -> int:
    from app.config import get_settings

    return get_settings().cache_candidates


# --- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    threshold: float
    hits: int
    correct: int
    wrong_on_negatives: int
    positives: int
    negatives: int

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 0.0

    @property
    def false_hit_rate(self) -> float:
        return self.wrong_on_negatives / self.negatives if self.negatives else 0.0


def _reduce(lookups: list[Lookup], *, verified: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each lookup as (the similarity down to which it hits, whether that hit is its own
    entry). Candidates are best first, so at any threshold the answer is the first accepted
    candidate at or above it: the first accepted one overall, once the threshold is below it.
    Exact hits answer at every threshold."""
    scores = np.full(len(lookups), -np.inf)
    own = np.zeros(len(lookups), dtype=bool)
    for i, lookup in enumerate(lookups):
        if lookup.exact_own or lookup.exact_other:
            scores[i], own[i] = np.inf, lookup.exact_own
            continue
        for sim, is_own, accepted in lookup.candidates:
            if accepted or not verified:
                scores[i], own[i] = sim, is_own
                break
    return scores, own


def score(lookups: list[Lookup], *, threshold: float, verified: bool) -> Figures:
    """Figures at ``threshold``: with ``verified`` the first accepted candidate at or above
    it answers; without, plain cosine (the nearest candidate, if at or above it)."""
    scores, own = _reduce(lookups, verified=verified)
    same = np.array([lookup.same for lookup in lookups], dtype=bool)
    hit = scores >= threshold
    return Figures(
        threshold=threshold,
        hits=int(hit.sum()),
        correct=int((hit & own & same).sum()),
        wrong_on_negatives=int((hit & ~same).sum()),
        positives=int(same.sum()),
        negatives=int((~same).sum()),
    )


def recall_at_fhr(lookups: list[Lookup], *, verified: bool, target: float = 0.01) -> float:
    """The best recall over every threshold whose false-hit rate is at most ``target``."""
    scores, own = _reduce(lookups, verified=verified)
    same = np.array([lookup.same for lookup in lookups], dtype=bool)
    negatives = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(target * len(negatives)))
    # hits need a score above the (allowed+1)-th best different-meaning score
    threshold = -np.inf if allowed >= len(negatives) else np.nextafter(negatives[allowed], np.inf)
    good = (scores >= threshold) & own & same
    return float(good.sum() / same.sum()) if same.any() else 0.0


# --- the command ---------------------------------------------------------------------------


@contextmanager
def database(say: Callable[[str], None], *, name: str | None = None) -> Iterator[Session]:
    """A session on THRIFTY_DATABASE_URL (or database ``name`` on the same server), migrated.
    When nothing answers there and it is a local address, the embedded Postgres is started
    for the run and stopped after."""
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import sessionmaker

    from app.config import get_settings
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres

    settings = get_settings()
    url = make_url(settings.database_url)
    if name is not None:
        url = url.set(database=name)
    server = EmbeddedPostgres(settings.home / "pgdata", url.port or 5432, host=url.host or "")
    started = False
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname="postgres",
            connect_timeout=3,
        ):
            pass
    except psycopg.OperationalError:
        if url.host not in ("127.0.0.1", "localhost"):
            raise
        say(f"no Postgres on {url.host}:{url.port}; starting the embedded one for this run")
        server.start()
        started = True
    if name is not None or started:
        server.ensure_database(url.database or "thrifty")
    rendered = url.render_as_string(hide_password=False)
    migrate(rendered)
    engine = create_engine(rendered)
    session = sessionmaker(engine)()
    try:
        yield session
    finally:
        session.close()
        engine.dispose()
        if started:
            server.stop()


def _line(label: str, figures: Figures) -> str:
    return (
        f"{label:>10}  {figures.precision:9.4f}  {figures.recall:7.4f}  "
        f"{figures.false_hit_rate:14.4f}  {figures.hits:6d}"
    )


def report(
    lookups: list[Lookup],
    *,
    default_threshold: float,
    verifier_name: str,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Print the sweep and the key=value lines; returns the key=value figures."""
    positives = sum(1 for lookup in lookups if lookup.same)
    say(f"\n{len(lookups)} lookups: {positives} same meaning, {len(lookups) - positives} different")
    header = (
        f"{'threshold':>10}  {'precision':>9}  {'recall':>7}  {'false_hit_rate':>14}  {'hits':>6}"
    )
    for verified, title in ((True, f"verified ({verifier_name})"), (False, "plain cosine")):
        say(f"\n{title}\n{header}")
        for threshold in sorted({*SWEEP, default_threshold}):
            mark = " <- default" if threshold == default_threshold and verified else ""
            say(
                _line(f"{threshold:.2f}", score(lookups, threshold=threshold, verified=verified))
                + mark
            )
    default = score(lookups, threshold=default_threshold, verified=True)
    cosine_default = score(lookups, threshold=default_threshold, verified=False)
    figures = {
        "threshold": default_threshold,
        "cosine_precision": cosine_default.precision,
        "cosine_false_hit_rate": cosine_default.false_hit_rate,
        "pairs": float(len(lookups)),
        "precision": default.precision,
        "recall": default.recall,
        "false_hit_rate": default.false_hit_rate,
        "recall_at_1pct_fhr": recall_at_fhr(lookups, verified=True),
        "cosine_recall_at_1pct_fhr": recall_at_fhr(lookups, verified=False),
    }
    say(f"\nverifier={verifier_name}")
    for key, value in figures.items():
        say(f"{key}={int(value)}" if key == "pairs" else f"{key}={value:.4f}")
    return figures


def evaluate(
    *,
    pairs_path: Path | None,
    documents: bool,
    data_dir: Path,
    limit: int | None,
    verifier_path: Path | None,
    shared: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """`thrifty eval cache`: run the lookups and print the report."""
    from app.config import get_settings
    from app.embeddings.service import get_embedder

    settings = get_settings()
    embedder = get_embedder()
    kind = cache_service.DOCUMENT if documents else cache_service.PROMPT
    if pairs_path is not None:
        pairs = read_pairs(pairs_path, limit=limit)
        say(f"{len(pairs)} pairs from {pairs_path} ({kind}s)")
    else:
        pairs = companion_pairs(data_dir, embedder=embedder, limit=limit, say=say)
    if not pairs:
        raise ValueError("no labelled pairs to evaluate")
    verifier: cache_service.PromptVerifier
    if verifier_path is not None:
        from app.cache.trained import TrainedVerifier

        verifier = TrainedVerifier.load(verifier_path)
    else:
        verifier = cache_service.prompt_verifier()
    threshold = settings.cache_document_threshold if documents else settings.cache_prompt_threshold
    with database(say) as session:
        lookups = run_lookups(
            session,
            pairs=pairs,
            kind=kind,
            embedder=embedder,
            verifier=verifier,
            say=say,
            shared=shared,
        )
    name = "near-duplicate" if documents else verifier.name
    return report(lookups, default_threshold=threshold, verifier_name=name, say=say)
