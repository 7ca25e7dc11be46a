package executor

import (
	"log/slog"
	"os"
	"strings"
)

// hostSettings are kernel settings that weaken or strengthen the sandbox; the
// runner logs them at start so an operator can see the host's posture.
var hostSettings = []struct{ key, path string }{
	{"unprivileged_bpf_disabled", "/proc/sys/kernel/unprivileged_bpf_disabled"},
	{"unprivileged_userfaultfd", "/proc/sys/vm/unprivileged_userfaultfd"},
	{"io_uring_disabled", "/proc/sys/kernel/io_uring_disabled"},
	{"legacy_tiocsti", "/proc/sys/dev/tty/legacy_tiocsti"},
	{"ptrace_scope", "/proc/sys/kernel/yama/ptrace_scope"},
	{"core_pattern", "/proc/sys/kernel/core_pattern"},
	{"max_user_namespaces", "/proc/sys/user/max_user_namespaces"},
}

func logHostSettings(log *slog.Logger) {
	attrs := make([]any, 0, 2*len(hostSettings))
	for _, s := range hostSettings {
		v := "absent"
		if b, err := os.ReadFile(s.path); err == nil {
			v = strings.TrimSpace(string(b))
		}
		attrs = append(attrs, s.key, v)
	}
	log.Info("host settings", attrs...)
}
