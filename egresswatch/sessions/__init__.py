"""Inference sessions: which events are egress, who is in scope, and the tracker that opens,
links evidence to and closes sessions (docs/sessions.md)."""
