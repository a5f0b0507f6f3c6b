"""Sweep orchestration: YAML pools on Ray Tune, recorded in MLflow."""
