# syntax=docker/dockerfile:1
#
# llmgw container image.
#
#   docker build -t llmgw .
#   docker run --rm -p 8080:8080 -e OPENAI_API_KEY llmgw
#
# The image runs the shipped gateway.yaml (which answers through the built-in `demo`
# provider until keys are set). Mount your own config as a directory on /etc/llmgw
# (not as a single file), so that an edited file, or a Kubernetes ConfigMap update, is
# seen and hot-reloaded by the running gateway.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: install the package and its dependencies into a self-contained venv ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY llmgw ./llmgw
# Dependency versions are bounded by pyproject.toml; the package itself is this source tree.
RUN python -m venv /opt/llmgw \
    && /opt/llmgw/bin/pip install --no-cache-dir ./

# --- runtime: the venv, the default config, and nothing else ------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="llmgw" \
      org.opencontainers.image.description="A fast, self-hosted LLM gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric id, so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 llmgw \
    && useradd --system --uid 10001 --gid llmgw --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin llmgw \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/llmgw

COPY --from=build /opt/llmgw /opt/llmgw
COPY gateway.yaml /etc/llmgw/gateway.yaml

ENV PATH=/opt/llmgw/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LLMGW_CONFIG=/etc/llmgw/gateway.yaml \
    LLMGW_DATABASE_URL=sqlite:////var/lib/llmgw/llmgw.db

# The usage ledger, budgets and managed keys (SQLite; mount a volume to keep them).
VOLUME ["/var/lib/llmgw"]
USER 10001:10001
EXPOSE 8080

# llmgw drains in-flight requests and streams on SIGTERM (server.shutdown_timeout);
# give `docker stop --time` at least that long.
STOPSIGNAL SIGTERM

# No curl in a slim image: the venv's Python asks /health itself, past any HTTP_PROXY.
# (Port 8080: keep it if you change server.port, or override this check.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/health', timeout=4); sys.exit(r.status != 200)"]

# Exec form: llmgw is PID 1 and receives SIGTERM / SIGHUP directly.
ENTRYPOINT ["llmgw"]
CMD ["--config", "/etc/llmgw/gateway.yaml", "--host", "0.0.0.0"]
