"""The process around the request: the middleware (ids, errors, access log), bounded
request bodies, CORS, listeners and connection cap, signals, reloads, and the typed
keys of app state."""
