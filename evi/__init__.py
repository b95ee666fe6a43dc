"""evi: elastic video inference on Kafka. This package is the thin shared core."""

__version__ = "0.1.0"
