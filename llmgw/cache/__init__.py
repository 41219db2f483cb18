"""The exact-match response cache (SPEC §4): keys and client policy (``keys``), the
entry and store contract (``entry``), the memory and Redis stores, the process's
cache (``front``), coalescing of identical requests (``coalesce``), an answer teed
into its flight (``recording``) and how a request meets all of it (``serve``)."""
