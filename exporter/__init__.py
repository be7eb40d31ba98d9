"""Prometheus exporter for Configuration Manager package distribution status."""

__version__ = "0.1.0"
