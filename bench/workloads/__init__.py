"""The workloads of corral's benchmark suite, run against any system through an adapter."""
