# A local Redis image for the chart's "try it" Redis on the real node (no registry here):
# Debian's redis-server on the local Python base image (images/make-python-base.sh), which
# is Debian bookworm too. Built by `hack/node.sh images`; not for production.
FROM python:3.11-slim-bookworm
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && redis-server --version
USER 10999:10999
EXPOSE 6379
ENTRYPOINT ["redis-server"]
