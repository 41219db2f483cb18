"""Who is asking: configured client keys → ``Principal`` (``keys``), managed keys kept
in step with the database (``managed``), bearer JWTs (``jwt``); who may use the admin
API (``admin``) and the dashboard's sign-in sessions (``sessions``)."""
