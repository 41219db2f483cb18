"""rpm, tpm and concurrency per key, model, client address, endpoint and globally
(SPEC §5): the ``front`` (scopes, admission, settlement, headers) over the ``memory``
and ``redis`` backends, which share their types through ``types``; the client's
address behind trusted proxies (``clientip``)."""
