FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/thrifty

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
# The CPU build of torch first: the semantic cache's embedder needs it, and resolving it
# through sentence-transformers from PyPI would pull the multi-GB CUDA wheels.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install .
ENV HF_HUB_OFFLINE=1 THRIFTY_HOME=/var/lib/thrifty

# The embedder's ONNX graph is exported here, once, so no container exports it at start.
RUN useradd --create-home thrifty \
    && mkdir -p /var/lib/thrifty-metrics /var/lib/thrifty \
    && python -m app.embeddings.export \
    && chown -R thrifty /var/lib/thrifty-metrics /var/lib/thrifty
USER thrifty
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
