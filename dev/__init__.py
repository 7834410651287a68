"""The development harness: the local stack, sample events, the worker as a process; used by tests, demo, bench."""
