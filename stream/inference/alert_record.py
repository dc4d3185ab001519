"""Where the alert record's names were imported from before it joined the other wire records in
:mod:`stream.records.alerts`. Kept for ``bench/console_bench.py``, which imports them from here; new code imports
``stream.records``."""

from __future__ import annotations

from stream.records.alerts import SeverityPolicy, alert_record, decode_alert_record

__all__ = ["SeverityPolicy", "alert_record", "decode_alert_record"]
