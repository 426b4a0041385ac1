"""OpenAI's Files and Batches routes, served from a ``Store`` (``openai_batches.py``).

They return the wire dicts of ``wire.py`` with ``response_model=None``, so each is sent as
built: no second validation, no reordering of keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from app.simulator.common import APIError, SimulatorSettings
from app.simulator.openai_batches import Store
from app.simulator.openai_lines import MAX_FILE_BYTES, CreateBatchRequest, check_create_request
from app.simulator.wire import BatchObject, FileDeleted, FileObject, ListPage


def router(settings: SimulatorSettings) -> APIRouter:
    """The Files and Batches routes, on fresh state (mounted under ``/v1`` behind bearer auth)."""
    store = Store(settings)
    routes = APIRouter()

    @routes.post("/files", response_model=None)
    def upload_file(
        file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
    ) -> FileObject:
        if purpose != "batch":
            raise APIError(
                400,
                f"Invalid purpose '{purpose}'; the simulator accepts only 'batch'.",
                param="purpose",
            )
        # Read one byte past the limit so oversized uploads are detected without buffering them.
        data = file.file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise APIError(400, "File exceeds the 200 MB limit for batch input.", param="file")
        return store.add_file(file.filename or "upload.jsonl", purpose, data).to_json()

    @routes.get("/files", response_model=None)
    def list_files(purpose: str | None = None) -> ListPage[FileObject]:
        data = [stored.to_json() for stored in store.list_files(purpose)]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }

    @routes.get("/files/{file_id}", response_model=None)
    def retrieve_file(file_id: str) -> FileObject:
        return store.get_file(file_id).to_json()

    @routes.get("/files/{file_id}/content")
    def file_content(file_id: str) -> Response:
        return Response(store.get_file(file_id).data, media_type="application/octet-stream")

    @routes.delete("/files/{file_id}", response_model=None)
    def delete_file(file_id: str) -> FileDeleted:
        store.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @routes.post("/batches", response_model=None)
    def create_batch(request: CreateBatchRequest) -> BatchObject:
        check_create_request(request)
        return store.create_batch(request).to_json()

    @routes.get("/batches", response_model=None)
    def list_batches(
        limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None
    ) -> ListPage[BatchObject]:
        return store.list_batches(limit, after)

    @routes.get("/batches/{batch_id}", response_model=None)
    def retrieve_batch(batch_id: str) -> BatchObject:
        return store.get_batch(batch_id)

    @routes.post("/batches/{batch_id}/cancel", response_model=None)
    def cancel_batch(batch_id: str) -> BatchObject:
        return store.cancel_batch(batch_id)

    return routes
