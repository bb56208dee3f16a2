"""Monitoring: metric names, alarm specs, drift, and the local dashboard (see monitoring/metrics.py)."""
