package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKeyValue has the shape of a legacy OpenAI user key, which the
// keyvault's format check accepts; it is no real key.
const testKeyValue = "sk-AbCdEfGhIjKlMnOpQrStT3BlbkFJAbCdEfGhIjKlMnOpQrSt"

// rotatedKeyValue is the second version of testKeyValue's key.
const rotatedKeyValue = "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"

// TestKeysLifecycle stores, lists, gets, rotates and deletes a key and
// checks that only `keys get` ever prints the value.
func TestKeysLifecycle(t *testing.T) {
	var outputs []result
	record := func(r result) result { outputs = append(outputs, r); return r }

	r := record(mustRun(t, ExitOK, testKeyValue+"\n",
		"keys", "store", "cli-life", "--provider", "openai", "--label", "team=ml"))
	if !strings.Contains(r.out, "stored cli-life (provider openai) version 1") {
		t.Errorf("store output = %q", r.out)
	}

	r = record(mustRun(t, ExitOK, "", "keys", "list", "--provider", "openai"))
	if !strings.Contains(r.out, "cli-life") || !strings.Contains(r.out, "1:active") {
		t.Errorf("list output = %q, want cli-life with 1:active", r.out)
	}
	record(mustRun(t, ExitOK, "", "--json", "keys", "list"))

	got := mustRun(t, ExitOK, "", "keys", "get", "cli-life")
	if got.out != testKeyValue+"\n" {
		t.Errorf("get output = %q, want the value and a newline", got.out)
	}

	file := filepath.Join(t.TempDir(), "new.key")
	if err := os.WriteFile(file, []byte(rotatedKeyValue), 0o600); err != nil {
		t.Fatal(err)
	}
	r = record(mustRun(t, ExitOK, "", "keys", "rotate", "cli-life", "--file", file))
	if !strings.Contains(r.out, "version 2") {
		t.Errorf("rotate output = %q, want version 2", r.out)
	}

	got = mustRun(t, ExitOK, "", "--json", "keys", "get", "cli-life")
	var reply struct {
		Version int    `json:"version"`
		Value   string `json:"value"`
	}
	if err := json.Unmarshal([]byte(got.out), &reply); err != nil {
		t.Fatalf("decoding get --json output %q: %v", got.out, err)
	}
	if reply.Version != 2 || reply.Value != rotatedKeyValue {
		t.Errorf("get --json = version %d, want version 2 with the rotated value", reply.Version)
	}

	record(mustRun(t, ExitOK, "", "keys", "rotate-kek"))
	r = record(mustRun(t, ExitOK, "", "keys", "delete", "cli-life"))
	if !strings.Contains(r.out, "deleted cli-life") {
		t.Errorf("delete output = %q", r.out)
	}
	record(mustRun(t, ExitNotFound, "", "keys", "get", "cli-life"))

	for _, o := range outputs {
		if strings.Contains(o.out+o.err, testKeyValue) ||
			strings.Contains(o.out+o.err, rotatedKeyValue) {
			t.Errorf("output other than keys get contains the key value: %q %q", o.out, o.err)
		}
	}
}

func TestKeysStoreRejectsEmptyValue(t *testing.T) {
	r := mustRun(t, ExitUsage, "\n", "keys", "store", "cli-empty", "--provider", "openai")
	if !strings.Contains(r.err, "standard input") {
		t.Errorf("stderr = %q, want a hint about standard input", r.err)
	}
	mustRun(t, ExitUsage, "v", "keys", "store", "cli-empty")
	mustRun(t, ExitUsage, "", "keys", "store", "a", "b", "--provider", "openai")
}

// TestKeysGetAsAgentDenied checks that the demo agent, which holds no
// key-reader role for the provider, is refused.
func TestKeysGetAsAgentDenied(t *testing.T) {
	mustRun(t, ExitOK, testKeyValue, "keys", "store", "openai", "cli-deny")
	agentCreds := filepath.Join(devHome, "identities", "creds", "agent-demo.creds")
	r := mustRun(t, ExitDenied, "", "--creds", agentCreds, "keys", "get", "cli-deny")
	if strings.Contains(r.out+r.err, testKeyValue) {
		t.Errorf("denied get printed the key value")
	}
}

func TestKeysStoreMalformedMessage(t *testing.T) {
	r := nodex(t, "not-a-key", "keys", "store", "cli-malformed", "--provider", "openai")
	if r.code == ExitOK {
		t.Fatal("keys store accepted a malformed openai key")
	}
	if strings.Contains(r.err, "a openai") || !strings.Contains(r.err, "a key of provider openai") {
		t.Errorf("stderr = %q, want a key of provider openai", r.err)
	}
}
