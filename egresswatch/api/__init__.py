"""The web edge: a FastAPI app over the store's read side (API, live stream, metrics, dashboard).

It imports store, model, config and the pure classifier only, never capture or attribution.
"""
