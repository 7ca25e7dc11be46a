package deploy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/stack"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

// Files of the broker folder (DIR/broker), mounted into every broker node.
const (
	IssuerSeedFile   = "issuer.seed"
	AuthorityKeyFile = "authority.key"
	RootPubFile      = "root.pub"
	RegistrySeedFile = "registry.seed.json"
	KEKFile          = "kek"
)

// DefaultHosts are the names the node certificate is valid for: the
// compose service names, the Kubernetes StatefulSet pod and service names
// and loopback, where the host's nodex program reaches the published port.
var DefaultHosts = []string{
	"broker-1", "broker-2", "broker-3",
	"nodex-broker", "nodex-broker-0.nodex-broker", "nodex-broker-1.nodex-broker",
	"nodex-broker-2.nodex-broker", "*.nodex-broker.nodex.svc.cluster.local",
	"localhost", "127.0.0.1",
}

// InitOptions configure [Init].
type InitOptions struct {
	// Out is the output folder. Existing keys and credentials in it are
	// kept, so running Init again only adds what is missing.
	Out string
	// Hosts are the DNS names and IP addresses of the node certificate;
	// nil means DefaultHosts.
	Hosts []string
	// UID and GID own the service and broker folders, which containers
	// read as that non-root user; -1 leaves the owner unchanged.
	UID, GID int
}

// Init writes everything a multi-node deployment needs under opts.Out:
//
//	identities/          root and authority keys and every credentials file
//	                     (the operator's own copy; never mounted anywhere)
//	tls/                 CA key and certificate and the node certificate
//	broker/              issuer seed, authority key, root public key,
//	                     registry seed and node TLS files, for each broker
//	services/<service>/  the service's credentials and the CA certificate;
//	                     keyvault also gets the KEK, incident the authority key
//	operator/, agent/    the operator's and the demo agent's credentials
//
// Every secret is a file of mode 0600 in a 0700 folder.
func Init(ctx context.Context, opts InitOptions) error {
	if opts.Out == "" {
		return errors.New("no output folder: pass --out DIR")
	}
	if opts.Hosts == nil {
		opts.Hosts = DefaultHosts
	}
	idDir := filepath.Join(opts.Out, "identities")
	setup, err := identity.Bootstrap(idDir)
	if err != nil {
		return err
	}
	tlsFiles, err := ensureTLS(filepath.Join(opts.Out, "tls"), opts.Hosts)
	if err != nil {
		return err
	}
	if err := writeBroker(ctx, opts.Out, setup, tlsFiles); err != nil {
		return err
	}
	if err := writeServices(opts.Out, setup, tlsFiles); err != nil {
		return err
	}
	for _, folder := range []string{"broker", "services"} {
		if err := chownTree(filepath.Join(opts.Out, folder), opts.UID, opts.GID); err != nil {
			return err
		}
	}
	if opts.UID < 0 && opts.GID < 0 {
		return nil
	}
	// The sandbox-runner runs as container root without CAP_DAC_OVERRIDE,
	// so its folder must belong to uid 0 to be readable.
	runner := filepath.Join(opts.Out, "services", "sandbox")

	return chownTree(runner, 0, 0)
}

func ensureTLS(dir string, hosts []string) (broker.TLSFiles, error) {
	files := broker.TLSFiles{
		CA: filepath.Join(dir, broker.TLSCAFile), Cert: filepath.Join(dir, broker.TLSNodeFile),
		Key: filepath.Join(dir, broker.TLSNodeKeyFile),
	}
	if _, err := os.Stat(files.CA); err == nil {
		return files, nil
	}

	return broker.GenerateTLS(dir, hosts, 2*365*24*time.Hour)
}

// writeBroker writes the broker folder. The registry seed comes from a
// throwaway single-server stack on loopback, which signs the bootstrap
// records and role epochs exactly as `nodex dev` does.
func writeBroker(ctx context.Context, out string, setup *identity.Setup,
	tlsFiles broker.TLSFiles,
) error {
	dir := filepath.Join(out, "broker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := ensureIssuerSeed(filepath.Join(dir, IssuerSeedFile)); err != nil {
		return err
	}
	copies := map[string]string{
		filepath.Join(setup.Dir, "authority.key"): filepath.Join(dir, AuthorityKeyFile),
		tlsFiles.CA:   filepath.Join(dir, broker.TLSCAFile),
		tlsFiles.Cert: filepath.Join(dir, broker.TLSNodeFile),
		tlsFiles.Key:  filepath.Join(dir, broker.TLSNodeKeyFile),
	}
	for from, to := range copies {
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	rootPub := base64.StdEncoding.EncodeToString(setup.Root.Public())
	if err := writeFile(filepath.Join(dir, RootPubFile), []byte(rootPub+"\n")); err != nil {
		return err
	}

	return writeSeed(ctx, setup, filepath.Join(dir, RegistrySeedFile))
}

func writeSeed(ctx context.Context, setup *identity.Setup, path string) error {
	tmp, err := os.MkdirTemp("", "nodex-init-")
	if err != nil {
		return fmt.Errorf("creating a temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	abs, err := filepath.Abs(setup.Dir)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", setup.Dir, err)
	}
	if err := os.Symlink(abs, filepath.Join(tmp, "identities")); err != nil {
		return fmt.Errorf("linking the identities folder: %w", err)
	}
	st, err := stack.Start(ctx, stack.Config{Dir: tmp})
	if err != nil {
		return fmt.Errorf("starting the seed stack: %w", err)
	}
	defer st.Close()
	if _, err := ExportRegistry(ctx, st.Broker.Registry(), path); err != nil {
		return err
	}

	return nil
}

func ensureIssuerSeed(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("generating callout issuer key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("reading callout issuer seed: %w", err)
	}

	return writeFile(path, seed)
}

// writeServices writes one folder per service plus the operator's and the
// demo agent's.
func writeServices(out string, setup *identity.Setup, tlsFiles broker.TLSFiles) error {
	folders := map[string]string{
		"operator": identity.OperatorID, "agent": identity.DemoAgentID,
	}
	for _, svc := range identity.Services {
		folders[filepath.Join("services", svc)] = svc
	}
	for folder, id := range folders {
		dir := filepath.Join(out, folder)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		if err := copyFile(setup.CredsPath(id), filepath.Join(dir, id+".creds")); err != nil {
			return err
		}
		if err := copyFile(tlsFiles.CA, filepath.Join(dir, broker.TLSCAFile)); err != nil {
			return err
		}
	}
	kek := filepath.Join(out, "services", "keyvault", KEKFile)
	if _, err := os.Stat(kek); errors.Is(err, fs.ErrNotExist) {
		if err := keyvault.GenerateKEKFile(kek); err != nil {
			return err
		}
	}

	return copyFile(filepath.Join(setup.Dir, "authority.key"),
		filepath.Join(out, "services", "incident", AuthorityKeyFile))
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", from, err)
	}

	return writeFile(to, data)
}

// writeFile writes data with mode 0600, also over an existing file.
func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("setting mode of %s: %w", path, err)
	}

	return nil
}

func chownTree(root string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("changing the owner of %s to %d:%d (run as root or pass "+
			"--uid -1 --gid -1): %w", root, uid, gid, err)
	}

	return nil
}
