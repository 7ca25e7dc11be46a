# The sandbox-runner on a Debian 13 root filesystem that deploy/docker/rootfs.sh
# builds with debootstrap: python3 3.13, nodejs 20.19 (node 20 or later is
# needed for its permission model), bash, coreutils, gawk and bats, all from
# Debian's packages. RUNNER_BASE lets an operator with a registry use an
# ordinary base instead, e.g. --build-arg RUNNER_BASE=debian:trixie-slim plus
# the same packages installed on top.
ARG RUNNER_BASE=nodex-runner-base:trixie
FROM ${RUNNER_BASE}
COPY sandbox-runner sandbox-init /usr/local/bin/
# The runner stays root inside the container: it writes multi-range uid and
# gid maps for each sandbox (CAP_SETUID, CAP_SETGID) and the limits into its
# cgroup subtree. Programs run as uid 1000 inside their own user namespace,
# mapped to per-slot host ids, never to root. See deploy/compose and
# docs/deploy.md for the exact privileges.
ENTRYPOINT ["/usr/local/bin/sandbox-runner"]
