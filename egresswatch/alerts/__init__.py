"""Alerting: the policy (which findings matter and how much), the rules that find them, the
engine that evaluates them off the capture thread, and the sinks that deliver them."""
