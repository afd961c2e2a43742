"""The sidecar's own HTTP server: lean uvicorn (``server``), request-head limits (``headguard``),
the Date header (``httpdate``), probes answered before routing (``fastpath``) and the routes."""
