package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/policy/policy"
)

// rolePolicy is the role that serves the policy subjects.
const rolePolicy = "service:policy"

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage roles and the Rego policy set, and ask for decisions",
		Long: `policy talks to the policy service as the operator. A policy set is a folder
of *.rego files (tests in *_test.rego) and an optional data.json. push stores
it only after it compiles and its tests pass; the previous set stays active
otherwise.`,
	}
	role := &cobra.Command{Use: "role", Short: "Define roles and bind them to identities"}
	role.AddCommand(newPolicyRoleAddCmd(g), newPolicyRoleBindCmd(g))
	cmd.AddCommand(role, newPolicyPushCmd(g, false), newPolicyPushCmd(g, true),
		newPolicyDecideCmd(g))

	return cmd
}

// readJSONFile decodes the JSON file path ("-": stdin) into v, rejecting
// unknown fields so that a typo is reported instead of ignored.
func readJSONFile(g *globals, path string, v any) error {
	var r io.Reader = g.stdio.In
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return usageError{fmt.Errorf("opening %s: %w", path, err)}
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return usageError{fmt.Errorf("invalid JSON in %s: %w", path, err)}
	}

	return nil
}

func newPolicyRoleAddCmd(g *globals) *cobra.Command {
	var file string
	var replace bool
	cmd := &cobra.Command{
		Use:   "add NAME --file ROLE.json [--replace]",
		Short: "Define a role from a JSON file (description, kinds, prod, permissions)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{errors.New("missing --file: the role as JSON, or - for standard input")}
			}
			req := policy.RoleAddRequest{Name: args[0], Replace: replace}
			if err := readJSONFile(g, file, &req.Role); err != nil {
				return err
			}
			if err := req.Role.Validate(); err != nil {
				return usageError{fmt.Errorf("invalid role in %s: %w", file, err)}
			}
			var reply policy.RoleAddReply
			err := g.request(cmd.Context(), identity.OperatorID, policy.SubjectRoleAdd, rolePolicy,
				req, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				verb := "replaced"
				if reply.Created {
					verb = "added"
				}
				_, err := fmt.Fprintf(w, "%s role %s (role data revision %d)\n", verb, reply.Name,
					reply.Revision)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "JSON file with the role, or - for standard input")
	cmd.Flags().BoolVar(&replace, "replace", false, "overwrite an existing role of the same name")

	return cmd
}

func newPolicyRoleBindCmd(g *globals) *cobra.Command {
	var unbind bool
	cmd := &cobra.Command{
		Use:   "bind IDENTITY ROLE [--unbind]",
		Short: "Bind a role to an identity in the policy data (or remove the binding)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := policy.RoleBindRequest{Identity: args[0], Role: args[1], Unbind: unbind}
			var reply policy.RoleBindReply
			err := g.request(cmd.Context(), identity.OperatorID, policy.SubjectRoleBind, rolePolicy,
				req, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s now has roles: %s\n", reply.Identity, joinOr(reply.Roles))
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&unbind, "unbind", false, "remove the binding instead of adding it")

	return cmd
}

// loadPolicyDir reads every *.rego file of dir and its data.json, if any.
func loadPolicyDir(dir string) (policy.PushRequest, error) {
	req := policy.PushRequest{Modules: map[string]string{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil {
		return req, usageError{fmt.Errorf("listing %s: %w", dir, err)}
	}
	if len(files) == 0 {
		return req, usageError{fmt.Errorf("no .rego files in %s: pass the policy set's folder", dir)}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return req, fmt.Errorf("reading %s: %w", f, err)
		}
		req.Modules[filepath.Base(f)] = string(b)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data.json"))
	if errors.Is(err, os.ErrNotExist) {
		return req, nil
	}
	if err != nil {
		return req, fmt.Errorf("reading data.json: %w", err)
	}
	if err := json.Unmarshal(b, &req.Data); err != nil {
		return req, usageError{fmt.Errorf("invalid JSON in %s: %w", filepath.Join(dir, "data.json"), err)}
	}

	return req, nil
}

// newPolicyPushCmd builds `policy push DIR` or, with testOnly, `policy
// test DIR`.
func newPolicyPushCmd(g *globals, testOnly bool) *cobra.Command {
	use, short, subject := "push DIR", "Compile, test and activate the policy set in DIR",
		policy.SubjectPush
	if testOnly {
		use, short, subject = "test DIR", "Compile the policy set in DIR and run its tests without activating it",
			policy.SubjectTest
	}

	return &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `. DIR holds *.rego files (tests in *_test.rego) and an
optional data.json. The exit code is 3 when the set does not compile or a test
fails.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := loadPolicyDir(args[0])
			if err != nil {
				return err
			}
			if testOnly {
				return g.testPolicy(cmd, subject, req)
			}
			var reply policy.PushReply
			err = g.request(cmd.Context(), identity.OperatorID, subject, rolePolicy, req, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "pushed: now deciding with %s\n", reply.Active)
				return err
			})
		},
	}
}

func (g *globals) testPolicy(cmd *cobra.Command, subject string, req policy.PushRequest) error {
	var reply policy.TestReply
	err := g.request(cmd.Context(), identity.OperatorID, subject, rolePolicy, req, &reply)
	if err != nil {
		return err
	}
	err = g.output(reply, func(w io.Writer) error {
		if reply.CompileError != "" {
			_, err := fmt.Fprintf(w, "does not compile: %s\n", reply.CompileError)
			return err
		}
		if reply.Tests == nil {
			_, err := fmt.Fprintln(w, "compiled; no tests ran")
			return err
		}
		for _, r := range reply.Tests.Results {
			if !r.Pass {
				fmt.Fprintf(w, "FAIL %s %s %s\n", r.Name, r.Location, r.Error)
			}
		}
		_, err := fmt.Fprintf(w, "%d passed, %d failed\n", reply.Tests.Passed, reply.Tests.Failed)
		return err
	})
	if err != nil {
		return err
	}
	if !reply.OK {
		return exitCode(ExitDenied)
	}

	return nil
}

func newPolicyDecideCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "decide --input FILE",
		Short: "Ask the policy service for a decision on an input",
		Long: `decide sends an authz input (subject, action, resource, context as JSON; see
schemas/policy/decision-input.schema.json) to the policy service and prints the
decision. The exit code is 0 when allowed and 3 when denied.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in authz.Input
			if err := readJSONFile(g, file, &in); err != nil {
				return err
			}
			var d authz.Decision
			err := g.request(cmd.Context(), identity.OperatorID, policy.SubjectDecide, rolePolicy,
				in, &d)
			if err != nil {
				return err
			}
			err = g.output(d, func(w io.Writer) error {
				verdict := "deny"
				if d.Allow {
					verdict = "allow"
				}
				_, err := fmt.Fprintf(w, "%s (%s)\nreasons: %s\n", verdict, d.Revision,
					strings.Join(d.Reasons, "; "))
				return err
			})
			if err != nil {
				return err
			}
			if !d.Allow {
				return exitCode(ExitDenied)
			}

			return nil
		},
	}
	cmd.Flags().StringVar(&file, "input", "-", "JSON file with the decision input (- reads standard input)")

	return cmd
}
