# Worker and flow-run image for the docker and ecs work pools. The base is the official Prefect
# image of the same version as the project's pin (prefect 3.9.1, Python 3.11: Glue 5's Python),
# so the client in the container speaks the server's API version.
#   docker build -t reddit-pipeline:$(git rev-parse --short HEAD) .
FROM prefecthq/prefect:3.9.1-python3.11

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # prefect.yaml's pull step reads this: flow code runs from the copy baked in below.
    REDDIT_PIPELINE_PROJECT_DIR=/opt/reddit-pipeline \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

WORKDIR /opt/reddit-pipeline

# Dependencies first, in their own layer: code changes then rebuild in seconds. The versions
# are the ones the suite passed on (constraints.txt, which also holds prefect at the image's).
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p flows tasks blocks \
    && touch flows/__init__.py tasks/__init__.py blocks/__init__.py \
    && pip install --constraint constraints.txt . "prefect==3.9.1" "prefect-dask>=0.3,<0.4" \
    && pip uninstall -y reddit-pipeline

# The code, the SQL models, the contracts and the bundled sample (the `local` deployment).
COPY flows ./flows
COPY tasks ./tasks
COPY blocks ./blocks
COPY sql ./sql
COPY contracts ./contracts
COPY data/sample ./data/sample
COPY prefect.yaml prefect.local.yaml ./
# Editable, in place: tasks/settings.py finds sql/, contracts/ and data/sample/ next to the
# code, so the code must run from this folder, not from site-packages.
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 reddit \
    && mkdir -p /opt/reddit-pipeline/.local \
    && chown -R reddit:reddit /opt/reddit-pipeline/.local

USER reddit
# The Prefect image's entrypoint runs the command given by the worker (`prefect flow-run
# execute`); `docker run IMAGE` alone runs the pipeline on the sample.
CMD ["python", "flows/main.py"]
