"""Wire records and their orjson encoding.

Every record that crosses a Kafka topic is defined in this package, as a dataclass with ``to_dict`` and a decoder
(``from_dict``, or a ``decode_*`` function for a topic that carries several kinds) that refuses a malformed record
with :class:`RecordError`. The topics carry UTF-8 JSON objects. Import the records from here; the modules split them
by topic:

    fields          RecordError, the JSON field checks, the label words
    lines           LogLine (+ SourceRef); format 1 of the internal topics (``lines``, ``sessions``): an Envelope of
                    Routed lines, SessionLine; still read (records left by an older version) and ticks are written so
    batches         format 2 of the internal topics: LineBatch and SessionBatch, a header and a row per line
    windows         Window, WindowLine (``windows``)
    verdicts        Verdict, Cause (``verdicts``, and inside alerts)
    alerts          Alert, AlertRecord (``alerts``), SeverityPolicy
    feedback        WindowLabel, LabeledSequence (``feedback``, as parse_feedback reads it), AlertTriage (the
                    console's label of a triaged alert)
    model_updates   ModelUpdate, RetrainReport, RetrainSchedule (``model-updates``)
    dead_letters    DeadLetter (``deadletter``)
    outgoing        Outgoing (a record on its way out), encode

Internal topics carry an :class:`Envelope` so that the stages can tell a log line from a tick (the wall-clock
progress marker a stage writes into its own input, which keeps idle-timeout closing deterministic on replay).
"""

from __future__ import annotations

from stream.records.alerts import (
    CRITICAL,
    RESOLVED,
    SEVERITIES,
    STATUSES,
    Alert,
    AlertRecord,
    SeverityPolicy,
    alert_record,
    decode_alert_record,
    rfc3339,
)
from stream.records.dead_letters import DeadLetter
from stream.records.feedback import (
    AlertTriage,
    Feedback,
    FeedbackError,
    LabeledSequence,
    WindowLabel,
    parse_feedback,
    sequence_id,
)
from stream.records.fields import ANOMALOUS, INT64_MAX, INT64_MIN, NORMAL, RecordError, json_type
from stream.records.lines import TICK, Envelope, LogLine, Routed, SessionLine, SourceRef
from stream.records.model_updates import (
    ADAPTER,
    RETRAIN,
    SCHEDULE,
    ModelUpdate,
    ModelUpdateRecord,
    RetrainReport,
    RetrainSchedule,
    decode_model_update,
)
from stream.records.outgoing import Outgoing, encode
from stream.records.verdicts import LABELED, SUPERVISIONS, ZERO_LABEL, ZERO_SHOT, Cause, Verdict
from stream.records.windows import (
    WINDOW_LINE_FIELDS,
    Window,
    WindowLine,
    encode_window,
    window_id_for,
    window_label,
    window_record,
)

__all__ = [
    "ADAPTER",
    "ANOMALOUS",
    "CRITICAL",
    "INT64_MAX",
    "INT64_MIN",
    "LABELED",
    "NORMAL",
    "RESOLVED",
    "RETRAIN",
    "SCHEDULE",
    "SEVERITIES",
    "STATUSES",
    "SUPERVISIONS",
    "TICK",
    "WINDOW_LINE_FIELDS",
    "ZERO_LABEL",
    "ZERO_SHOT",
    "Alert",
    "AlertRecord",
    "AlertTriage",
    "Cause",
    "DeadLetter",
    "Envelope",
    "Feedback",
    "FeedbackError",
    "LabeledSequence",
    "LogLine",
    "ModelUpdate",
    "ModelUpdateRecord",
    "Outgoing",
    "RecordError",
    "RetrainReport",
    "RetrainSchedule",
    "Routed",
    "SessionLine",
    "SeverityPolicy",
    "SourceRef",
    "Verdict",
    "Window",
    "WindowLabel",
    "WindowLine",
    "alert_record",
    "decode_alert_record",
    "decode_model_update",
    "encode",
    "encode_window",
    "json_type",
    "parse_feedback",
    "rfc3339",
    "sequence_id",
    "window_id_for",
    "window_label",
    "window_record",
]
