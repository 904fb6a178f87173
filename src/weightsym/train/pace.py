"""The run's pace: after the first epoch of each run segment, the time the rest should take (printed once).

>>> duration(42), duration(450), duration(9000)
('42 s', '7.5 min', '2.5 h')
"""

from __future__ import annotations

import time

__all__ = ["duration", "estimate_time_left"]


def estimate_time_left(run_) -> None:
    """Once per run segment, after its first epoch: the time the rest of the run should take at that pace."""
    if run_.estimated:
        return
    run_.estimated = True
    done = run_.state["step"] - run_.pace_step
    left = (run_.stop_at or run_.task.total_steps) - run_.state["step"]
    if done > 0 and left > 0:
        seconds = (time.perf_counter() - run_.pace_start) / done * left
        run_.log(f"estimated time left: {duration(seconds)} ({left:,} more steps at the first epoch's pace, "
                 "evaluations included)")


def duration(seconds: float) -> str:
    """``"42 s"``, ``"7.5 min"``, ``"3.2 h"``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"
