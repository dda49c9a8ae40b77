# Schoolgate gateway image. Build: docker build -t schoolgate .
# Run:   docker run -p 8080:8080 -p 9464:9464 -v schoolgate-data:/app/data schoolgate
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin schoolgate

WORKDIR /app

# Install the package first so a config or list edit does not reinstall dependencies. The build
# reads README.md (the long description) and LICENSE (license-files) as well as pyproject.toml.
# proxy/schoolgate/templates links to templates/, which must be here for the wheel to carry the
# package's own copies (the fallback); the same folder is the one the config names, to edit.
COPY pyproject.toml README.md LICENSE ./
COPY proxy/ proxy/
COPY templates/ templates/
RUN pip install .

# What the technician edits, read through paths in the config (relative to config/).
COPY config/ config/
COPY categories/ categories/
COPY keywords/ keywords/
COPY alerts/ alerts/

# The data directory holds the event store and the interception CA: keep it in a volume, or every
# device would need the new CA certificate after each container is replaced.
RUN mkdir -p /app/data && chown schoolgate:schoolgate /app/data
VOLUME ["/app/data"]

USER schoolgate
EXPOSE 8080 9464

# Inside the container listen on every interface; publish the ports only to school networks.
CMD ["schoolgate", "run", "--config", "/app/config/schoolgate.yaml", "--listen", "0.0.0.0:8080", "--metrics", "0.0.0.0:9464"]
