"""One module per workload; each exposes ``run(n, rounds, workdir) -> WorkloadResult``."""
