package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InstallSecrets copies every regular file of the folder from into the
// folder to, each with mode 0400 and owned by the calling process, and
// returns the names copied. It serves a Kubernetes init container: the
// kubelet writes Secret files owned by root, and with a pod fsGroup it adds
// group read (0440), which the credentials loader rejects. Running as the
// service's uid, with the fsGroup letting it read the Secret, the init
// container leaves files that only that uid can read.
//
// Entries whose names start with ".." (the kubelet's ..data folder and its
// timestamped targets) are skipped; the top-level links to them are
// followed. Each file is written to a temporary name and renamed, so a
// restarted init container replaces what an earlier run left.
func InstallSecrets(from, to string) ([]string, error) {
	entries, err := os.ReadDir(from)
	if err != nil {
		return nil, fmt.Errorf("reading secret folder %s: %w", from, err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", to, err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		src := filepath.Join(from, name)
		st, err := os.Stat(src)
		if err != nil {
			return names, fmt.Errorf("reading %s: %w", src, err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if err := installFile(src, filepath.Join(to, name)); err != nil {
			return names, err
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("secret folder %s has no files: check the Secret volume", from)
	}

	return names, nil
}

func installFile(src, dst string) (err error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, werr := f.Write(data)
	// The mode is set again because the umask may have cleared bits of
	// 0400 (never added any), and a later chmod states the contract.
	cerr := f.Chmod(0o400)
	serr := f.Sync()
	if err := errors.Join(werr, cerr, serr, f.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("installing %s: %w", dst, err)
	}

	return nil
}
