"""Operator and producer commands: dead letters, replay, publishing test events, erasure."""
