"""The shared core of seedpool: what every trainer and the orchestrator use, written once.

- `seedcore.config`: the run-config base class (validation, YAML, dict round-trip) and its error type.
- `seedcore.runtime`: seeding, devices, atomic checkpoints, RNG state, the trainers' command line.
- `seedcore.loop`: the train-loop skeleton (budgets, stop reasons, reports, checkpoints, resume).
- `seedcore.record`: the record's vocabulary: metric names and their meaning, tags, stop reasons, MLflow naming.
- `seedcore.registry`: `module:Name` references, so registries name their entries without importing them.

Imports neither Ray nor MLflow; `seedcore.config` and `seedcore.registry` import no torch either.
"""
