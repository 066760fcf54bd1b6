"""The recommendation service: FastAPI app (``app``), in-memory state (``state``), the
recommendation logic shared with the CLI (``recommend``) and one router per resource."""
