"""Signed session reports: the evidence of one session from the store, rendered as Markdown,
HTML or JSON, signed with the machine's Ed25519 key, and verified against the store."""
