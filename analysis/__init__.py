"""Statistics of training success over seeds, read from MLflow."""
