"""TwinPlan benchmarks: `make bench` (python -m benchmarks). Ratios against baselines measured in the same run."""
