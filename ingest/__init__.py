"""MQTT -> InfluxDB: decode and validate readings, batch them into line
protocol, write them, and dead-letter what cannot be stored."""

from ingest.decode import Decoded, Decoder, Rejection, StatusEvent
from ingest.service import Ingester

__all__ = ["Decoded", "Decoder", "Ingester", "Rejection", "StatusEvent"]
