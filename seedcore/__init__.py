"""What every trainer, the orchestrator and the analysis share."""
