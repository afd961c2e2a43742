"""kafka-connect-probe: Kubernetes probes for Kafka Connect workers."""

__version__ = "0.1.0"
