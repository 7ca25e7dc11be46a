# One NodeX service, the broker or the nodex program: a static Go binary on
# an empty base. The build context holds only that binary (deploy/.build/NAME,
# written by `make images`). BASE lets an operator with a registry use an
# ordinary base image, e.g. --build-arg BASE=gcr.io/distroless/static-debian12.
# The context has bin/ (the binary) and an empty data/, which becomes /data
# owned by the image's user, so a fresh named volume there is writable.
ARG BASE=scratch
FROM ${BASE}
COPY bin/ /usr/local/bin/
COPY --chown=65532:65532 data/ /data/
# A numeric user, because scratch has no /etc/passwd. nodex init gives the
# secret folders to this uid.
USER 65532:65532
WORKDIR /tmp
