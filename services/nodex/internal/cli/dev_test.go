package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDevPortInUse checks that nodex dev fails at once, naming the address
// and the fix, when another process listens on its NATS port.
func TestDevPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodexBin, "--home", t.TempDir(), "dev", "--port", port,
		"--metrics-addr", "")
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)

	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitError {
		t.Fatalf("nodex dev: %v, want exit code %d\nstderr: %s", err, ExitError, stderr.String())
	}
	if elapsed > 5*time.Second {
		t.Errorf("nodex dev took %s to fail, want a failure before the 10 s ready wait", elapsed)
	}
	msg := stderr.String()
	for _, want := range []string{addr, "address already in use", "--port 0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr = %q, want %q", msg, want)
		}
	}
}
