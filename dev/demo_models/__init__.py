"""Demo models for every seed-table row: `python -m dev.demo_models` (see README.md here)."""
