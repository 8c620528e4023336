"""The durable event log of interactions and impressions."""

from funnel.events.file_log import FileEventLog
from funnel.events.memory_log import MemoryEventLog
from funnel.events.protocol import EventLog, LogRecord, iter_records
from funnel.events.registry import EVENT_LOGS, open_event_log
from funnel.events.tables import impressions_table, interactions_table

__all__ = [
    "EVENT_LOGS",
    "EventLog",
    "FileEventLog",
    "LogRecord",
    "MemoryEventLog",
    "impressions_table",
    "interactions_table",
    "iter_records",
    "open_event_log",
]
