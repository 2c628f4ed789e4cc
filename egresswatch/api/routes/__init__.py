"""One router per resource; each maps store records to the response schemas of api.schemas."""
