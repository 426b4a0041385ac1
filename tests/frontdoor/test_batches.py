"""The Batch API's rules, in-process: line limits, expiry, cancelling before validation, and
how request fields and model names become jobs."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.catalog.catalog import Alias, AliasTarget, get_catalog
from app.config import get_settings
from app.frontdoor import batches, files, translate
from app.frontdoor.schemas import BatchIn
from app.jobs.schemas import JobIn
from app.models import OpenAIBatch, OpenAIBatchStatus, RequestedMode, Tenant
from tests.conftest import make_tenant

URL = "/v1/chat/completions"


def _file(db: Session, tenant: Tenant, rows: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    stored = files.store_upload(db, tenant=tenant, source=io.BytesIO(data),
                                filename="in.jsonl", purpose=files.BATCH)  # fmt: skip
    return files.public_id(stored.id)


def _request(custom_id: str, text: str = "Hello?") -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": URL, "body": body}


def _batch(db: Session, tenant: Tenant, rows: list[dict[str, Any]]) -> OpenAIBatch:
    body = BatchIn(input_file_id=_file(db, tenant, rows), endpoint=URL, completion_window="24h")
    return batches.create(db, tenant=tenant, body=body)


def _lines(db: Session, tenant: Tenant, file_id: Any) -> list[dict[str, Any]]:
    data = b"".join(files.iter_parts(db, file_id=file_id))
    return [json.loads(row) for row in data.splitlines()]


def test_a_file_over_the_line_limit_fails_validation(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = make_tenant(db)
    monkeypatch.setattr(get_settings(), "max_batch_lines", 2)
    batch = _batch(db, tenant, [_request(str(i)) for i in range(3)])
    batches.start(db, batch_id=batch.id, catalog=get_catalog())
    assert batch.status == OpenAIBatchStatus.failed
    assert batch.errors is not None
    assert batch.errors[0]["code"] == "too_many_requests"
    assert batch.group_id is None


def test_a_batch_past_its_window_expires_and_its_requests_say_so(db: Session) -> None:
    tenant, _ = make_tenant(db)
    batch = _batch(db, tenant, [_request("a"), _request("b", "Goodbye?")])
    batches.start(db, batch_id=batch.id, catalog=get_catalog())
    assert batch.status == OpenAIBatchStatus.in_progress
    assert batch.total == 2
    # No worker runs here: the jobs are still queued when the window ends.
    batch.expires_at = batch.created_at - timedelta(seconds=1)
    db.flush()
    batch = batches.get(db, tenant=tenant, batch_id=batches.public_id(batch.id))
    assert batch.status == OpenAIBatchStatus.expired
    assert batch.expired_at is not None
    assert (batch.completed_count, batch.failed_count) == (0, 2)
    assert batch.output_file_id is None
    errors = _lines(db, tenant, batch.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("a", "batch_expired"),
        ("b", "batch_expired"),
    ]


def test_a_batch_cancelled_while_validating_never_starts(db: Session) -> None:
    tenant, _ = make_tenant(db)
    batch = _batch(db, tenant, [_request("a")])
    cancelled = batches.cancel(db, tenant=tenant, batch_id=batches.public_id(batch.id))
    assert cancelled.status == OpenAIBatchStatus.cancelled
    batches.start(db, batch_id=batch.id, catalog=get_catalog())
    assert batch.group_id is None
    assert batch.status == OpenAIBatchStatus.cancelled


def test_lines_are_stored_in_parts_on_line_boundaries(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = make_tenant(db)
    monkeypatch.setattr(files, "PART_BYTES", 1000)
    rows = [_request(str(i), "x" * 300) for i in range(20)]
    batch = _batch(db, tenant, rows)
    parts = list(files.iter_parts(db, file_id=batch.input_file_id))
    assert len(parts) > 3
    assert all(part.endswith(b"\n") for part in parts)
    lines = list(files.iter_lines(db, file_id=batch.input_file_id))
    assert [json.loads(row)["custom_id"] for row in lines] == [str(i) for i in range(20)]


def _job(body: dict[str, Any], tenant: str = "acme") -> JobIn | translate.LineError:
    base = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}
    return translate.to_job({**base, **body}, catalog=get_catalog(), tenant=tenant,
                            mode=RequestedMode.auto)  # fmt: skip


def test_honoured_fields_reach_the_job() -> None:
    job = _job({"max_completion_tokens": 30, "temperature": 0, "user": "u-1", "n": 1,
                "stream": False, "top_p": 1, "metadata": {"k": "v"}})  # fmt: skip
    assert isinstance(job, JobIn)
    assert (job.max_output_tokens, job.temperature) == (30, 0.0)
    assert job.metadata == {"k": "v", "user": "u-1"}
    assert (job.model, job.tier) == (None, None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"top_p": 0.5}, "top_p"),
        ({"n": 2}, "n"),
        ({"stream": True}, "stream"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"seed": 1}, "seed"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_tokens"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"model": "gpt-9"}, "model"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x", "name": "me"}]}, "messages[0].name"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, None),
    ],
)  # fmt: skip
def test_every_other_field_is_refused_with_its_name(
    body: dict[str, Any], param: str | None
) -> None:
    refused = _job(body)
    assert isinstance(refused, translate.LineError)
    assert refused.param == param
    assert refused.message


def test_an_alias_maps_a_name_to_a_policy_per_tenant() -> None:
    catalog = get_catalog().model_copy(
        update={"aliases": {"gpt-4o": Alias(tier="standard",
                                             tenants={"acme": AliasTarget(model="gpt-4o-mini")})}}
    )  # fmt: skip
    resolve = translate.resolve_model
    assert resolve(catalog, name="gpt-4o", tenant="acme") == ("gpt-4o-mini", None)
    assert resolve(catalog, name="gpt-4o", tenant="other") == (None, "standard")
    assert resolve(catalog, name="gpt-4.1", tenant="acme") == ("gpt-4.1", None)
    assert resolve(catalog, name="auto", tenant="acme") == (None, None)
    with pytest.raises(LookupError):
        resolve(catalog, name="gpt-9", tenant="acme")
    # The shipped catalog's aliases resolve.
    assert resolve(get_catalog(), name="gpt-3.5-turbo", tenant="acme") == (None, "economy")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (False, False)),
        ({"stream": True}, (True, False)),
        ({"stream": True, "stream_options": {"include_usage": True}}, (True, True)),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"chunk": 1}}, "stream_options"),
    ],
)
def test_chat_completions_may_stream_but_a_batch_line_may_not(
    body: dict[str, Any], expected: tuple[bool, bool] | str
) -> None:
    options = translate.stream_options(body)
    if isinstance(expected, str):
        assert isinstance(options, translate.LineError)
        assert options.param == expected
    else:
        assert options == expected
    base = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], **body}
    streamed = translate.to_job(base, catalog=get_catalog(), tenant="acme",
                                mode=RequestedMode.realtime, streaming=True)  # fmt: skip
    assert isinstance(streamed, JobIn)
    if body.get("stream") is True:
        assert isinstance(_job(body), translate.LineError)
