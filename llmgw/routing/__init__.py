"""Which targets may answer a model name, in what order, and whether a failure moves
on: resolution, circuit breakers and the fallback policy (``router``); smart routing's
model ``profiles``, ``scoring`` strategies, alias ``pools``, the complexity
``classifier``, the state that outlives a snapshot (``state``) and what the client is
told of a decision (``report``)."""
