"""The provider HTTP client: a keep-alive HTTP/1.1 pool on httptools (``client``),
its responses (``response``) and errors (``errors``), connecting with Happy Eyeballs
(``connect``), proxies (``proxy``) and TLS settings (``tls``). It knows nothing of
providers, translation or the gateway's requests."""
