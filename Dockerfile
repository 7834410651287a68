# The worker image: slim, non-root, installed from the lock file (no dev tools).
FROM python:3.11-slim AS build
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY worker ./worker
COPY schemas ./schemas
COPY sql ./sql
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home carsys
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER carsys
EXPOSE 9108
# SIGTERM triggers a graceful shutdown (SHUTDOWN_TIMEOUT_S, below compose's stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["carsys-ingest", "run"]
