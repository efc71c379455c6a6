"""Scoring: events in, per-sender evidence, score, state and decisions out."""
