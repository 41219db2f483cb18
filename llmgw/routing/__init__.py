"""Which targets may answer a model name, in what order, and whether a failure moves
on: resolution, circuit breakers and the fallback policy."""
