"""Progress and cancellation callbacks shared by compression and decompression."""

from __future__ import annotations

from collections.abc import Callable

from georsic.errors import Cancelled

#: ``progress(done, total)``, called after each tile.
Progress = Callable[[int, int], None]
#: ``cancel()``: True stops the run.
Cancel = Callable[[], bool]


def check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled; no output was written")
