"""Who is asking: client keys → ``Principal`` (``keys``), and who may use the admin
API (``admin``)."""
