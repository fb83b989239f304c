"""Argilla's rq jobs, run inside the server process: there is no Redis and no `argilla_server worker`.

Each job's `.delay(...)` (what Argilla calls to enqueue) is replaced by one that starts the job's own code as an
asyncio task on the server's event loop, so it shares the server's database engine. Blocking work (Hub downloads and
uploads, webhook HTTP calls) runs in worker threads. `GET /api/v1/jobs/{id}` answers from an in-process registry.

The record-status job (enqueued by every dataset PATCH, e.g. a `min_submitted` change) leaves a marker file under
`ARGILLA_HOME_PATH/jobs/` until it finishes, so a recomputation cut short by a stop is run again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from argilla_server import _app
from argilla_server.api.handlers.v1 import jobs as jobs_handlers
from argilla_server.database import AsyncSessionLocal
from argilla_server.jobs import dataset_jobs, hub_jobs, webhook_jobs
from argilla_server.settings import settings
from fastapi import HTTPException, status
from rq.job import JobStatus

_LOGGER = logging.getLogger("annotation_server.jobs")
WEBHOOK_RETRY_DELAYS_S = (10, 60, 180)  # webhook_jobs.notify_event_job's rq Retry
SHUTDOWN_GRACE_S = 5.0


class InProcessJob:
    """What Argilla reads from an rq Job: `id` and `get_status()`."""

    def __init__(self, name: str) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.status = JobStatus.QUEUED
        self.error: str | None = None

    def get_status(self, refresh: bool = True) -> JobStatus:
        return self.status


_registry: dict[str, InProcessJob] = {}
_tasks: set[asyncio.Task] = set()
_status_locks: dict[UUID, asyncio.Lock] = {}
_status_original: Callable[[UUID], Awaitable[None]] | None = None


def _spawn(name: str, work: Callable[[], Awaitable[Any]]) -> InProcessJob:
    job = InProcessJob(name)
    _registry[job.id] = job

    async def run() -> None:
        job.status = JobStatus.STARTED
        try:
            await work()
        except asyncio.CancelledError:
            job.status = JobStatus.CANCELED
            raise
        except Exception as error:  # noqa: BLE001 - a failed job is recorded and logged, the server goes on
            job.status, job.error = JobStatus.FAILED, f"{type(error).__name__}: {error}"
            _LOGGER.error("job %s (%s) failed: %s", job.id, name, job.error)
        else:
            job.status = JobStatus.FINISHED

    task = asyncio.get_running_loop().create_task(run(), name=f"annotation-job-{name}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return job


# ---- record status (distribution) -----------------------------------------------------------------------------------


def _markers() -> Path:
    path = Path(settings.home_path) / "jobs" / "record-status"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _delay_update_records_status(dataset_id: UUID) -> InProcessJob:
    marker = _markers() / str(dataset_id)
    marker.touch()

    async def work() -> None:
        # One at a time per dataset: two PATCHes in a row must not interleave their per-record transactions.
        lock = _status_locks.setdefault(dataset_id, asyncio.Lock())
        async with lock:
            await _status_original(dataset_id)
        marker.unlink(missing_ok=True)

    return _spawn(f"update-records-status-{dataset_id}", work)


def _resume_record_status_jobs() -> None:
    for marker in _markers().iterdir():
        try:
            dataset_id = UUID(marker.name)
        except ValueError:
            marker.unlink(missing_ok=True)
            continue
        _LOGGER.warning("resuming the record status recomputation of dataset %s", dataset_id)
        _delay_update_records_status(dataset_id)


# ---- webhooks -------------------------------------------------------------------------------------------------------


def _delay_notify_event(webhook_id: UUID, event: str, timestamp: datetime, data: dict) -> InProcessJob:
    from argilla_server.models import Webhook
    from argilla_server.webhooks.v1.commons import notify_event

    async def work() -> None:
        for attempt, delay in enumerate((0, *WEBHOOK_RETRY_DELAYS_S)):
            await asyncio.sleep(delay)
            async with AsyncSessionLocal() as db:
                webhook = await Webhook.get_or_raise(db, webhook_id)
            try:
                response = await asyncio.to_thread(notify_event, webhook, event, timestamp, data)
                response.raise_for_status()
                return
            except Exception:
                if attempt == len(WEBHOOK_RETRY_DELAYS_S):
                    raise

    return _spawn(f"webhook-{event}", work)


# ---- Hugging Face Hub import / export -------------------------------------------------------------------------------


def _delay_import_from_hub(name: str, subset: str, split: str, dataset_id: UUID, mapping: dict) -> InProcessJob:
    async def work() -> None:
        from argilla_server.api.schemas.v1.datasets import HubDatasetMapping
        from argilla_server.contexts.hub import BATCH_SIZE, HubDataset
        from argilla_server.search_engine import SearchEngine

        parsed = HubDatasetMapping.model_validate(mapping)
        # Downloads block: they run in threads; database writes stay on the server's loop (HubDataset.import_to).
        hub = await asyncio.to_thread(
            lambda: HubDataset(name, subset, split, parsed).take(hub_jobs.HUB_DATASET_TAKE_ROWS)
        )
        async with AsyncSessionLocal() as db:
            dataset = await _dataset_with(db, dataset_id, "fields", "questions", "metadata_properties")
            if not dataset.is_ready:
                raise Exception("it's not possible to import records to a non published dataset")
            async with SearchEngine.get_by_name(settings.search_engine) as engine:
                hub._reset_row_idx()
                batches = iter(hub.dataset.batch(batch_size=BATCH_SIZE))
                while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                    await hub._import_batch_to(db, engine, batch, dataset)

    return _spawn(f"hub-import-{dataset_id}", work)


def _delay_export_to_hub(
    name: str, subset: str, split: str, private: bool, token: str, dataset_id: UUID
) -> InProcessJob:
    async def work() -> None:
        from argilla_server.contexts.hub import HubDatasetExporter

        async with AsyncSessionLocal() as db:
            dataset = await _dataset_with(
                db, dataset_id, "fields", "questions", "metadata_properties", "vectors_settings"
            )
        await asyncio.to_thread(HubDatasetExporter(dataset).export_to, name, subset, split, private, token)

    return _spawn(f"hub-export-{dataset_id}", work)


# ---- wiring ---------------------------------------------------------------------------------------------------------


def _get_job(job_id: str) -> InProcessJob:
    job = _registry.get(job_id)
    if job is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Job with id `{job_id}` not found")
    return job


@contextlib.asynccontextmanager
async def _lifespan(app, original):
    async with original(app):
        _resume_record_status_jobs()
        yield
        pending = [task for task in _tasks if not task.done()]
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_S)
            for task in still_running:  # record-status markers stay: the job runs again at the next start
                task.cancel()


def install(app) -> None:
    """Route every rq enqueue to in-process execution; drop the start-up Redis ping."""
    global _status_original
    _status_original = dataset_jobs.update_dataset_records_status_job
    dataset_jobs.update_dataset_records_status_job.delay = _delay_update_records_status
    webhook_jobs.notify_event_job.delay = _delay_notify_event
    hub_jobs.import_dataset_from_hub_job.delay = _delay_import_from_hub
    hub_jobs.export_dataset_to_hub_job.delay = _delay_export_to_hub
    jobs_handlers._get_job = _get_job
    _app.configure_redis = lambda: None
    original = app.router.lifespan_context
    app.router.lifespan_context = lambda a: _lifespan(a, original)


async def _dataset_with(db: Any, dataset_id: UUID, *relations: str) -> Any:
    """The dataset with the relations a Hub job reads, loaded up front (the job outlives lazy loading)."""
    from argilla_server.models import Dataset
    from sqlalchemy.orm import selectinload

    return await Dataset.get_or_raise(
        db, dataset_id, options=[selectinload(getattr(Dataset, name)) for name in relations]
    )
