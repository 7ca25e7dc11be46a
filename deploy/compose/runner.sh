#!/usr/bin/env bash
# Starts one sandbox-runner container on the compose network.
#   runner.sh [INDEX]   (INDEX 1 by default; run it twice for two replicas)
# Environment: PROJECT (compose project name, default compose), NODEX_TAG.
#
# Each option below lifts exactly one block that Docker's defaults put on
# the sandbox the runner builds per run (new user, PID, mount, network, IPC,
# UTS, cgroup and time namespaces, pivot_root into a fresh tmpfs, limits
# written into its cgroups):
#   --user 0 with --cap-drop ALL --cap-add SETUID,SETGID
#       container root writes the multi-range uid and gid maps of each
#       sandbox. No other capability is kept, CAP_SYS_ADMIN included.
#   --security-opt seccomp=../seccomp/sandbox-runner.json
#       Docker's default profile denies clone with CLONE_NEWUSER, unshare,
#       setns, mount, umount2 and pivot_root without CAP_SYS_ADMIN. The
#       shipped profile allows them, denies kernel-wide calls (module
#       loading, kexec, bpf, perf, io_uring, ptrace, keyrings, new mount
#       API) and makes clone3 fail with ENOSYS.
#   --security-opt systempaths=unconfined
#       Docker masks /proc paths (kcore, sysrq-trigger, ...), and the kernel
#       refuses a fresh proc mount in a child PID namespace while parts of
#       the parent's /proc are covered.
#   --cgroup-parent /nodex-sandbox/runner-INDEX and the four cgroup binds
#       on cgroup v1 the runner nests its sandboxes' cgroups under its own.
#       Only the pre-created subtree nodex-sandbox/runner-INDEX of each
#       controller is bound read-write (make runner-cgroups creates it),
#       never all of /sys/fs/cgroup, so the limits set on nodex-sandbox stay
#       out of reach. Each replica has its own subtree, because a runner
#       removes the cgroups it finds beside its own as stale.
#   AppArmor: not active on this host. Where it is, Docker's docker-default
#       profile denies mount; load a profile that allows the mounts above
#       or pass --security-opt apparmor=unconfined.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
index=${1:-1}
project=${PROJECT:-compose}
cg=/sys/fs/cgroup
sub=nodex-sandbox/runner-$index
for c in memory pids cpu cpuacct; do
	if [ ! -d "$cg/$c/$sub" ]; then
		echo "runner.sh: $cg/$c/$sub is missing: run make runner-cgroups" >&2
		exit 1
	fi
done
exec docker run -d --name "${project}_sandbox-runner_$index" \
	--label "com.docker.compose.project=$project" \
	--network "${project}_nodex" --restart unless-stopped \
	--read-only --tmpfs /tmp --user 0:0 \
	--cap-drop ALL --cap-add SETUID --cap-add SETGID \
	--security-opt no-new-privileges:true \
	--security-opt "seccomp=$here/../seccomp/sandbox-runner.json" \
	--security-opt systempaths=unconfined \
	--cgroup-parent "/$sub" \
	-v "$cg/memory/$sub:$cg/memory:rw" \
	-v "$cg/pids/$sub:$cg/pids:rw" \
	-v "$cg/cpu/$sub:$cg/cpu:rw" \
	-v "$cg/cpuacct/$sub:$cg/cpuacct:rw" \
	-v "$here/secrets/services/sandbox:/run/secrets/nodex:ro" \
	-e NATS_URL=tls://broker-1:4222,tls://broker-2:4222,tls://broker-3:4222 \
	-e SSL_CERT_FILE=/run/secrets/nodex/ca.crt \
	-e NODEX_CREDS=/run/secrets/nodex/sandbox.creds \
	-e NODEX_SANDBOX_REPLICAS=3 \
	-e NODEX_REGISTRY_STALE_AFTER=20s \
	"nodex-sandbox-runner:${NODEX_TAG:-dev}"
