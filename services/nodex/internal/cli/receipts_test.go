package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReceiptsVerify(t *testing.T) {
	prog := writeProgram(t, "receipt.py", "print('signed output')\n")
	run := mustRun(t, ExitOK, "", "--json", "run", prog)
	dir := t.TempDir()
	runFile := filepath.Join(dir, "run.json")
	if err := os.WriteFile(runFile, []byte(run.out), 0o600); err != nil {
		t.Fatal(err)
	}

	r := mustRun(t, ExitOK, "", "receipts", "verify", runFile)
	if !strings.Contains(r.out, "valid receipt of run") || !strings.Contains(r.out, "signed by sandbox") {
		t.Errorf("verify output = %q", r.out)
	}

	good := filepath.Join(dir, "stdout.txt")
	bad := filepath.Join(dir, "other.txt")
	if err := os.WriteFile(good, []byte("signed output\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("forged output\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ExitOK, "", "receipts", "verify", runFile, "--stdout", good)
	r = mustRun(t, ExitDenied, "", "receipts", "verify", runFile, "--stdout", bad)
	if !strings.Contains(r.err, "stdout of the run differs") {
		t.Errorf("stderr = %q, want the stdout mismatch", r.err)
	}

	// The receipt body comes after the run's own fields, so the last
	// exit_code is the signed one.
	at := strings.LastIndex(run.out, `"exit_code": 0`)
	if at < 0 {
		t.Fatalf("test cannot find exit_code in the receipt body: %s", run.out)
	}
	tampered := run.out[:at] + `"exit_code": 1` + run.out[at+len(`"exit_code": 0`):]
	r = mustRun(t, ExitDenied, tampered, "receipts", "verify", "-")
	if !strings.Contains(r.err, "signature does not verify") {
		t.Errorf("stderr = %q, want a signature failure", r.err)
	}
	mustRun(t, ExitUsage, "{}", "receipts", "verify", "-")
}

func TestArgCountMessage(t *testing.T) {
	r := mustRun(t, ExitUsage, "", "receipts", "verify")
	if strings.Contains(r.err, "nodex: nodex") {
		t.Errorf("stderr = %q, want the nodex prefix once", r.err)
	}
	if !strings.Contains(r.err, "receipts verify takes 1 argument, got 0") {
		t.Errorf("stderr = %q, want the expected and actual argument count", r.err)
	}
	r = mustRun(t, ExitUsage, "", "incidents", "list", "extra")
	if strings.Contains(r.err, "nodex: nodex") {
		t.Errorf("stderr = %q, want the nodex prefix once", r.err)
	}
}
