# The worker image: distroless Python (no shell, no package manager, no pip), a numeric non-root user, installed from
# the lock file without dev tools. When a CVE lands: docs/security.md, "When a vulnerability is published".
#
# Build and runtime stages share Debian 12's interpreter (/usr/bin/python3.11): the virtualenv's `python` link made
# in the build stage resolves unchanged in the runtime stage, which has nothing else.
FROM debian:12-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_PYTHON=/usr/bin/python3.11 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY worker ./worker
COPY schemas ./schemas
COPY sql ./sql
RUN uv sync --locked --no-dev --no-editable

FROM gcr.io/distroless/python3-debian12:nonroot
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:/usr/bin:/bin PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry; the chart's runAsUser must match
# it (tests/unit/test_chart.py reads this line).
USER 10001:10001
EXPOSE 9108
# SIGTERM triggers a graceful shutdown (SHUTDOWN_TIMEOUT_S, below compose's stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["carsys-ingest", "run"]
