"""What one view's materialization reports: Feast's job status, and the counts the engine logs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from feast.infra.common.materialization_job import MaterializationJob, MaterializationJobStatus

log = logging.getLogger(__package__)  # "imagerank.store.engine": one logger for the engine's lines

COUNTS = ("rows", "in_window", "null_keys", "entities")
"""What the key pass counts per chunk: source rows, rows in the window, rows of those without a value in
some join key (skipped), entities (the latest row of each) in the chunk."""


@dataclass
class DaskMaterializationJob(MaterializationJob):
    """One view's materialization on Dask, with the counts of what was read, written and left out."""

    _job_id: str
    _status: MaterializationJobStatus
    _error: Optional[BaseException] = None
    rows_read: int = 0
    """Rows of the source files."""
    rows_in_window: int = 0
    """Rows whose event timestamp lies in the materialization window."""
    null_keys: int = 0
    """Rows in the window without a value in some join key: skipped (Feast's local engine fails on them)."""
    entities_written: int = 0
    """Entities written (one row each, the latest)."""
    superseded_rows: int = 0
    """Rows in the window not written because a later row of the same entity was (duplicate keys)."""
    seconds: float = 0.0

    def status(self) -> MaterializationJobStatus:
        return self._status

    def error(self) -> Optional[BaseException]:
        return self._error

    def should_be_retried(self) -> bool:
        return False

    def job_id(self) -> str:
        return self._job_id

    def url(self) -> Optional[str]:
        return None

    def log_summary(self, view: str) -> None:
        """One line per view: what was read, written and left out. Rows without a key are a data problem
        (Feast's own engine stops at the first): a warning that names how many."""
        line = (f"DaskEngine: {view}: {self.rows_in_window} rows in the window, {self.entities_written} entities "
                f"written, {self.superseded_rows} rows superseded by a later row of the same entity, "
                f"{self.null_keys} rows without an entity key skipped")
        if self.null_keys:
            log.warning(line)
        else:
            log.info(line)
