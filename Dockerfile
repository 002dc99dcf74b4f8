# An image for Spark on Kubernetes: Java 17, Spark (the distribution bundled in the pyspark wheel)
# and the batchml environment, non-editable.  Untested here (no Docker daemon, no cluster).
#
#   docker build -t REGISTRY/batchml:0.1.0 .                              # the rating jobs
#   docker build --build-arg EXTRAS=tumor -t REGISTRY/batchml-tumor:0.1.0 .   # + TensorFlow
#
# Submit with BATCHML_ENV_ARCHIVE=none PYSPARK_PYTHON=/opt/batchml/env/bin/python and
# --conf spark.kubernetes.container.image=...: see README "On a cluster".  The Python minor
# version must be the driver's (pyspark refuses a mismatch): the same base image's python.
FROM python:3.11-slim-bookworm

ARG EXTRAS=""
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 185 --home-dir /opt/batchml --no-create-home spark

WORKDIR /opt/batchml
COPY pyproject.toml README.md ./
COPY lib ./lib
RUN python -m venv /opt/batchml/env \
    && /opt/batchml/env/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && rm -rf lib build
COPY jobs ./jobs
COPY conf ./conf
COPY docker/entrypoint.sh /opt/entrypoint.sh
RUN mkdir -p /opt/batchml/work && chown spark /opt/batchml/work && chmod 755 /opt/entrypoint.sh

# pyspark's package dir is a Spark distribution (bin/, jars/); conf/local.yaml etc. under BATCHML_HOME
ENV SPARK_HOME=/opt/batchml/env/lib/python3.11/site-packages/pyspark \
    PATH=/opt/batchml/env/bin:$PATH \
    PYSPARK_PYTHON=/opt/batchml/env/bin/python \
    BATCHML_HOME=/opt/batchml \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/batchml/work
USER 185
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/entrypoint.sh"]
