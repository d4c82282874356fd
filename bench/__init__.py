"""Benchmarks of retention against its peers, measured side by side in one invocation.

``python -m bench --suite all`` generates each workload's data, runs our tool and every peer
on identical copies, alternating, for several rounds, and prints one table (also written to
docs/performance.md with ``--write``). Timing goals live here, never in the tests.
"""
