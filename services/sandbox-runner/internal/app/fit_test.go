package app

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFitOutputKeepsReplyUnderBudget(t *testing.T) {
	tests := []struct {
		name           string
		stdout, stderr string
	}{
		{"two large outputs", strings.Repeat("a", 1<<20), strings.Repeat("b", 1<<20)},
		{"control characters expand in JSON", strings.Repeat("\x01", 300<<10), "ok"},
		{"multi-byte text", strings.Repeat("é", 400<<10), strings.Repeat("€", 100<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &ExecReply{Stdout: tt.stdout, Stderr: tt.stderr}
			fitOutput(rep, maxReplyOutputBytes)
			if got := jsonLen(rep.Stdout) + jsonLen(rep.Stderr); got > maxReplyOutputBytes {
				t.Errorf("encoded output %d bytes, want at most %d", got, maxReplyOutputBytes)
			}
			if !utf8.ValidString(rep.Stdout) || !utf8.ValidString(rep.Stderr) {
				t.Error("cut split a UTF-8 sequence")
			}
			if !rep.StdoutTruncated && !rep.StderrTruncated {
				t.Error("nothing marked truncated")
			}
		})
	}
}

func TestFitOutputLeavesSmallOutputAlone(t *testing.T) {
	rep := &ExecReply{Stdout: "hello\n", Stderr: ""}
	fitOutput(rep, maxReplyOutputBytes)
	if rep.Stdout != "hello\n" || rep.StdoutTruncated || rep.StderrTruncated {
		t.Errorf("small output changed: %+v", rep)
	}
}
