"""rpm, tpm and concurrency per key, model and globally (SPEC §5): the ``front``
(scopes, admission, settlement, headers) over the ``memory`` and ``redis`` backends,
which share their types through ``types``."""
