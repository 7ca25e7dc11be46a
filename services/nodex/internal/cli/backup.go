package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// Paths under the state folder that a backup holds: the JetStream store
// (registry, policy, keyvault and incident buckets, bundles, events,
// threats, jobs) and the keyvault's key encryption key, without which the
// stored keys cannot be opened.
const (
	backupStoreDir = "jetstream"
	backupKEKFile  = "keyvault.kek"
)

func newBackupCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write all NodeX state of a stopped nodex dev to FILE, encrypted to the operator",
		Long: `backup archives the JetStream store of NODEX_HOME (the identity registry,
policy data, keyvault buckets, code bundles, incidents, events and threats) and
the keyvault's key encryption key into FILE (mode 0600). The archive is
encrypted to the operator's encryption key from its credentials (--creds or the
dev operator), so only those credentials can restore it.

Stop nodex dev first: the store must not change while it is copied. The
identities folder (root key and credentials) is not in the backup; keep it
safe separately, since restore needs the same root key.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.backup(args[0], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")

	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore all NodeX state from a backup into a stopped NODEX_HOME",
		Long: `restore decrypts FILE with the operator's credentials and writes its
JetStream store and key encryption key into NODEX_HOME. NODEX_HOME must hold
the identities of the same deployment (the backup names its root key). With
--force an existing store is kept aside as jetstream.replaced-TIME instead of
stopping the restore. Stop nodex dev first, and start it again afterwards.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.restore(args[0], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing JetStream store (kept aside, not deleted)")

	return cmd
}

// ensureStopped fails when the nodex dev of home still accepts connections.
func ensureStopped(home string) error {
	b, err := os.ReadFile(filepath.Join(home, devrun.URLFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil || u.Host == "" {
		return nil
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return nil
	}
	conn.Close()

	return fmt.Errorf("nodex dev of %s is running at %s: stop it first, since its store must not change meanwhile",
		home, u.Host)
}

func (g *globals) backup(path string, force bool) error {
	home := g.homeDir()
	if err := ensureStopped(home); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(home, backupStoreDir)); err != nil {
		return fmt.Errorf("no JetStream store in %s: pass --home with the state folder of nodex dev", home)
	}
	creds, err := g.loadCreds(identity.OperatorID)
	if err != nil {
		return fmt.Errorf("loading operator credentials: %w", err)
	}

	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: pass --force to overwrite it", path)
	}
	if err != nil {
		return fmt.Errorf("creating backup file: %w", err)
	}
	files, size, err := writeBackup(f, home, creds)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return err
	}

	summary := map[string]any{"file": path, "files": files, "bytes": size, "recipient": creds.ID}
	return g.output(summary, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "backed up %d files (%d bytes) of %s to %s, encrypted to %s\n",
			files, size, home, path, creds.ID)
		return err
	})
}

// writeBackup writes the encrypted archive of home to w and returns the
// number of files and their total size.
func writeBackup(w io.Writer, home string, creds *identity.Credentials) (int, int64, error) {
	bw, err := newBackupWriter(w, creds)
	if err != nil {
		return 0, 0, err
	}
	gz := gzip.NewWriter(bw)
	tw := tar.NewWriter(gz)
	files, size := 0, int64(0)
	add := func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(home, p)
		if err != nil {
			return err
		}
		n, err := addToTar(tw, p, filepath.ToSlash(rel), d)
		files, size = files+int(min(n, 1)), size+n
		return err
	}
	if err := filepath.WalkDir(filepath.Join(home, backupStoreDir), add); err != nil {
		return 0, 0, fmt.Errorf("archiving the JetStream store: %w", err)
	}
	kek := filepath.Join(home, backupKEKFile)
	if info, err := os.Lstat(kek); err == nil {
		if err := add(kek, fs.FileInfoToDirEntry(info), nil); err != nil {
			return 0, 0, fmt.Errorf("archiving %s: %w", backupKEKFile, err)
		}
	}
	if err := tw.Close(); err != nil {
		return 0, 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, 0, err
	}

	return files, size, bw.Close()
}

// addToTar adds one directory or regular file and returns the bytes
// written. Other file types do not occur in the store and are skipped.
func addToTar(tw *tar.Writer, path, name string, d fs.DirEntry) (int64, error) {
	info, err := d.Info()
	if err != nil {
		return 0, err
	}
	switch {
	case info.IsDir():
		return 0, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700,
			ModTime: info.ModTime()})
	case !info.Mode().IsRegular():
		return 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600,
		Size: info.Size(), ModTime: info.ModTime()})
	if err != nil {
		return 0, err
	}

	return io.Copy(tw, f)
}

func (g *globals) restore(path string, force bool) error {
	home := g.homeDir()
	if err := ensureStopped(home); err != nil {
		return err
	}
	creds, err := g.loadCreds(identity.OperatorID)
	if err != nil {
		return fmt.Errorf("loading operator credentials: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return usageError{fmt.Errorf("opening backup: %w", err)}
	}
	defer f.Close()
	br, err := readBackupHeader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := checkRootKey(home, br.Header.RootKey); err != nil {
		return err
	}
	if err := br.unwrap(creds); err != nil {
		return fmt.Errorf("decrypting %s: %w", path, err)
	}
	if err := moveAside(home, force); err != nil {
		return err
	}
	files, err := extractBackup(br, home)
	if err != nil {
		return fmt.Errorf("restoring %s: %w", path, err)
	}

	summary := map[string]any{"file": path, "files": files, "created": br.Header.Created}
	return g.output(summary, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "restored %d files from %s (made %s) into %s; start nodex dev\n",
			files, path, formatTime(br.Header.Created), home)
		return err
	})
}

// checkRootKey fails unless home's identities pin the backup's root key.
func checkRootKey(home string, want []byte) error {
	root, err := loadRootKey(home)
	if err != nil {
		return fmt.Errorf("restore needs the identities of the deployment that made the backup: %w",
			err)
	}
	if !bytes.Equal(root.Public(), want) {
		return errors.New("the backup belongs to a deployment with another root key: " +
			"restore it into the state folder whose identities made it")
	}

	return nil
}

// moveAside renames an existing store and key encryption key out of the
// way when force is set, and fails otherwise.
func moveAside(home string, force bool) error {
	suffix := ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{backupStoreDir, backupKEKFile} {
		p := filepath.Join(home, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if !force {
			return fmt.Errorf("%s exists: pass --force to keep it aside as %s and restore",
				p, name+suffix)
		}
		if err := os.Rename(p, p+suffix); err != nil {
			return fmt.Errorf("moving %s aside: %w", p, err)
		}
	}

	return nil
}

// extractBackup writes the archive into home. It accepts only the store
// and the key encryption key, and no name that leaves home.
func extractBackup(r io.Reader, home string) (int, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(gz)
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if !filepath.IsLocal(name) || (name != backupKEKFile &&
			!strings.HasPrefix(name, backupStoreDir+string(filepath.Separator)) &&
			name != backupStoreDir) {
			return files, fmt.Errorf("unexpected entry %q in backup", h.Name)
		}
		dst := filepath.Join(home, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o700)
		case tar.TypeReg:
			err = writeFileFrom(dst, tr)
			files++
		default:
			err = fmt.Errorf("unexpected entry type of %q in backup", h.Name)
		}
		if err != nil {
			return files, err
		}
	}
	// The archive is read to its end, so a cut-off or changed file is
	// reported even after the last tar entry.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return files, err
	}

	return files, nil
}

func writeFileFrom(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}

	return f.Close()
}
