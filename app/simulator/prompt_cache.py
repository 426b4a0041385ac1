"""Provider prompt caching, as the simulator models it, so tests and benchmarks can measure it.

OpenAI (automatic): a request whose prompt starts with the same tokens as one seen in the last
``OPENAI_TTL_SECONDS`` under the same routing key (model, ``prompt_cache_key`` and the first
tokens of the prompt) reports the common part, in whole blocks of 128 tokens and at least
1024, as ``usage.prompt_tokens_details.cached_tokens``.

Anthropic (explicit): the content up to the last ``cache_control`` breakpoint is the cached
prefix when it is at least the model's minimum; seen within its TTL (``5m`` or ``1h``) under
the same model it is read (``cache_read_input_tokens``), else written
(``cache_creation_input_tokens``, split by TTL in ``cache_creation``); ``input_tokens`` is
what follows the breakpoint. docs/providers.md has the providers' rules this follows.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence

from app.simulator.summarise import (
    MESSAGE_OVERHEAD_TOKENS,
    count_tokens,
    message_text,
    split_tokens,
)
from app.simulator.wire import JSONObject, MessageUsage

OPENAI_MIN_TOKENS = 1024
OPENAI_BLOCK_TOKENS = 128
# In-memory retention: 5 to 10 minutes of inactivity (up to an hour off-peak).
OPENAI_TTL_SECONDS = 600.0
_ROUTING_TOKENS = 64
# Expired entries are dropped once a cache holds this many, then twice what is left (so a
# long benchmark's memory stays bounded by what is live, at little cost per request).
_PRUNE_AT = 10_000
# Anthropic's shortest cacheable prefix per model family (name prefix → tokens); others 1024.
ANTHROPIC_MIN_TOKENS: dict[str, int] = {
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
ANTHROPIC_DEFAULT_MIN_TOKENS = 1024
ANTHROPIC_TTLS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}


def anthropic_min_tokens(model: str) -> int:
    for family, tokens in ANTHROPIC_MIN_TOKENS.items():
        if model.startswith(family):
            return tokens
    return ANTHROPIC_DEFAULT_MIN_TOKENS


def _words(messages: Sequence[Mapping[str, object]]) -> list[str]:
    """The prompt as a token list (the simulator's tokeniser), roles included."""
    words: list[str] = []
    for message in messages:
        words.append(f"<{message.get('role')}>")
        words.extend(split_tokens(message_text(message.get("content"))))
    return words


class PromptCache:
    """What the simulated providers hold in their prompt caches, guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._openai: dict[str, tuple[float, list[str]]] = {}
        self._anthropic: dict[str, float] = {}
        self._prune_openai_at = self._prune_anthropic_at = _PRUNE_AT

    def clear(self) -> None:
        with self.lock:
            self._openai.clear()
            self._anthropic.clear()

    def openai_cached_tokens(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, object]],
        cache_key: str | None,
        prompt_tokens: int,
    ) -> int:
        """The prompt tokens this request reads from the cache (0 on a miss); it is cached."""
        words = _words(messages)
        head = "\x1f".join(words[:_ROUTING_TOKENS])
        route = hashlib.sha256(f"{model}\x1e{cache_key or ''}\x1e{head}".encode()).hexdigest()
        now = time.monotonic()
        with self.lock:
            seen = self._openai.get(route)
            self._openai[route] = (now + OPENAI_TTL_SECONDS, words)
            if len(self._openai) > self._prune_openai_at:
                self._openai = {k: v for k, v in self._openai.items() if v[0] >= now}
                self._prune_openai_at = max(_PRUNE_AT, 2 * len(self._openai))
        if seen is None or seen[0] < now:
            return 0
        common = 0
        for mine, theirs in zip(words, seen[1], strict=False):
            if mine != theirs:
                break
            common += 1
        cached = common - common % OPENAI_BLOCK_TOKENS
        return min(cached, prompt_tokens) if cached >= OPENAI_MIN_TOKENS else 0

    def anthropic_usage(self, *, model: str, params: JSONObject, input_tokens: int) -> MessageUsage:
        """The usage of ``params`` (``input_tokens`` counts every input token, output left
        at 0 for the caller): the prefix up to the last breakpoint read or written."""
        usage: MessageUsage = {
            "input_tokens": input_tokens,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        }
        prefix, tokens, ttl = _anthropic_prefix(params)
        if prefix is None or tokens < anthropic_min_tokens(model):
            return usage
        tokens = min(tokens, input_tokens)
        key = hashlib.sha256(f"{model}\x1e{prefix}".encode()).hexdigest()
        now = time.monotonic()
        with self.lock:
            expires = self._anthropic.get(key)
            hit = expires is not None and expires >= now
            # A hit refreshes the entry's lifetime; a miss writes it.
            self._anthropic[key] = max(expires or 0.0, now + ANTHROPIC_TTLS[ttl])
            if len(self._anthropic) > self._prune_anthropic_at:
                self._anthropic = {k: t for k, t in self._anthropic.items() if t >= now}
                self._prune_anthropic_at = max(_PRUNE_AT, 2 * len(self._anthropic))
        usage["input_tokens"] = input_tokens - tokens
        if hit:
            usage["cache_read_input_tokens"] = tokens
        else:
            usage["cache_creation_input_tokens"] = tokens
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": tokens if ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": tokens if ttl == "1h" else 0,
            }
        return usage


def _anthropic_prefix(params: JSONObject) -> tuple[str | None, int, str]:
    """The request's content up to and including its last ``cache_control`` block (as JSON),
    its length in tokens, and the breakpoint's TTL; (None, 0, "5m") without a breakpoint."""
    blocks: list[tuple[str, object]] = []
    system = params.get("system")
    if isinstance(system, str):
        blocks.append(("system", system))
    elif isinstance(system, list):
        blocks.extend(("system", block) for block in system)
    messages = params.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        role = str(message.get("role"))
        if isinstance(content, list):
            blocks.extend((role, block) for block in content)
        else:
            blocks.append((role, content))
    last, ttl = -1, "5m"
    for index, (_, block) in enumerate(blocks):
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict) and control.get("type") == "ephemeral":
            last, ttl = index, "1h" if control.get("ttl") == "1h" else "5m"
    if last < 0:
        return None, 0, ttl
    prefix = blocks[: last + 1]
    roles = {role for role, _ in prefix}
    tokens = sum(count_tokens(message_text([b] if isinstance(b, dict) else b)) for _, b in prefix)
    tokens += MESSAGE_OVERHEAD_TOKENS * len(roles)
    return json.dumps(prefix, ensure_ascii=False, sort_keys=True), tokens, ttl


PROMPT_CACHE = PromptCache()
