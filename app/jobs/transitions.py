"""Every write to the ``jobs`` table: a job's state transitions, in one module.

queued → waiting → batched → submitted → completed | failed | cancelled (docs/design.md).
Each transition re-checks the state it starts from in its UPDATE, so a concurrent writer that
got there first wins and the second is a no-op. A transition that ends jobs calls
``events.jobs_finished`` in the same transaction, so a result is never stored without the
webhook deliveries it owes.
"""

from __future__ import annotations

# Admission, ingest and cancellation (app/intake, app/jobs) ------------------------------------


# Windows, provider batches and results (app/batching) -----------------------------------------
