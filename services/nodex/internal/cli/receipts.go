package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
)

// signedReceipt is the sandbox-runner's run receipt: an Ed25519 signature
// (standard base64) over the exact bytes of Body.
type signedReceipt struct {
	Body      json.RawMessage `json:"body"`
	Signature string          `json:"signature"`
}

// receiptBody is the part of a receipt body that verification reads.
type receiptBody struct {
	RunID        string `json:"run_id"`
	BundleID     string `json:"bundle_id"`
	CodeSHA256   string `json:"code_sha256"`
	Agent        string `json:"agent"`
	Runtime      string `json:"runtime"`
	StdoutSHA256 string `json:"stdout_sha256"`
	StderrSHA256 string `json:"stderr_sha256"`
	Reason       string `json:"reason"`
	ExitCode     int    `json:"exit_code"`
	Insecure     bool   `json:"insecure,omitempty"`
	Signer       string `json:"signer"`
	KeyVersion   int    `json:"key_version"`
	Started      string `json:"started"`
	Finished     string `json:"finished"`
}

// sandboxRole is the role a receipt's signer must hold.
const sandboxRole = "service:sandbox"

func newReceiptsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "receipts", Short: "Check the signed receipts of sandbox runs"}
	cmd.AddCommand(newReceiptsVerifyCmd(g))

	return cmd
}

func newReceiptsVerifyCmd(g *globals) *cobra.Command {
	var stdoutFile, stderrFile string
	cmd := &cobra.Command{
		Use:   "verify FILE [--stdout FILE] [--stderr FILE]",
		Short: "Verify a run receipt's signature against the registry",
		Long: `verify reads a receipt from FILE (- for standard input): the receipt object
itself, or the output of nodex run --json. It checks that the signer is an
active identity holding service:sandbox and that its signing key of the stated
version verifies the signature. With --stdout or --stderr it also checks that
the file holds exactly the output the receipt digests. The exit code is 0 when
everything matches and 3 when anything does not.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(g, args[0])
			if err != nil {
				return err
			}
			s, err := parseReceipt(data)
			if err != nil {
				return err
			}
			body, err := g.verifyReceipt(cmd.Context(), s)
			if err != nil {
				return err
			}
			if err := checkOutputDigest("stdout", stdoutFile, body.StdoutSHA256); err != nil {
				return err
			}
			if err := checkOutputDigest("stderr", stderrFile, body.StderrSHA256); err != nil {
				return err
			}

			return g.output(body, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "valid receipt of run %s (bundle %s, agent %s): %s, exit %d; "+
					"signed by %s key %d\n", body.RunID, body.BundleID, body.Agent, body.Reason,
					body.ExitCode, body.Signer, body.KeyVersion)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&stdoutFile, "stdout", "", "file whose content must match the receipt's stdout digest")
	cmd.Flags().StringVar(&stderrFile, "stderr", "", "file whose content must match the receipt's stderr digest")

	return cmd
}

// readInput reads path, or standard input for "-".
func readInput(g *globals, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(g.stdio.In, 64<<20))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("reading receipt: %w", err)}
	}

	return b, nil
}

// parseReceipt accepts a signed receipt or a `nodex run --json` result.
func parseReceipt(data []byte) (signedReceipt, error) {
	var s signedReceipt
	if err := json.Unmarshal(data, &s); err == nil && len(s.Body) > 0 {
		return s, nil
	}
	var run struct {
		Exec *struct {
			Receipt signedReceipt `json:"receipt"`
		} `json:"exec"`
	}
	if err := json.Unmarshal(data, &run); err == nil && run.Exec != nil && len(run.Exec.Receipt.Body) > 0 {
		return run.Exec.Receipt, nil
	}

	return s, usageError{errors.New("no receipt found: pass a receipt or the output of nodex run --json")}
}

// receiptInvalid is the coded error of a receipt that does not verify.
func receiptInvalid(format string, args ...any) error {
	return errs.AccessDenied.Withf("receipt invalid: "+format, args...)
}

// verifyReceipt checks s against the signer's registry record.
func (g *globals) verifyReceipt(ctx context.Context, s signedReceipt) (*receiptBody, error) {
	var body receiptBody
	if err := json.Unmarshal(s.Body, &body); err != nil {
		return nil, receiptInvalid("body is not JSON: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, receiptInvalid("signature is not a base64 Ed25519 signature")
	}

	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	p, err := g.openParty(ctx, identity.DemoAgentID)
	if err != nil {
		return nil, err
	}
	defer p.Close(context.WithoutCancel(ctx))
	signer, err := p.View.Identity(body.Signer)
	if err != nil {
		return nil, receiptInvalid("signer %q is not in the registry", body.Signer)
	}
	if !signer.HasRole(sandboxRole) {
		return nil, receiptInvalid("signer %q does not hold %s", body.Signer, sandboxRole)
	}
	key, err := signingKeyOf(signer, body.KeyVersion)
	if err != nil {
		return nil, receiptInvalid("signer %q has no signing key %d", body.Signer, body.KeyVersion)
	}
	if !ed25519.Verify(key, compactJSON(s.Body), sig) {
		return nil, receiptInvalid("signature does not verify with key %d of %q",
			body.KeyVersion, body.Signer)
	}

	return &body, nil
}

// compactJSON removes the whitespace that indented output (such as
// `nodex run --json`) adds inside the body. The runner signs the compact
// encoding of json.Marshal, so this restores the signed bytes.
func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}

	return buf.Bytes()
}

// signingKeyOf returns version v of the identity's signing key. A rotated
// key still verifies the receipts it signed before the rotation; a key
// revoked as compromised verifies none.
func signingKeyOf(id *identity.Identity, v int) (ed25519.PublicKey, error) {
	for _, k := range id.SigningKeys {
		if k.Version == v && k.Compromise == nil && len(k.Key) == ed25519.PublicKeySize {
			return ed25519.PublicKey(k.Key), nil
		}
	}

	return nil, fmt.Errorf("no usable signing key version %d", v)
}

// checkOutputDigest compares the SHA-256 of file with want; no file means
// no check.
func checkOutputDigest(stream, file, want string) error {
	if file == "" {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return usageError{fmt.Errorf("reading --%s: %w", stream, err)}
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		return receiptInvalid("%s of the run differs from %s", stream, file)
	}

	return nil
}
