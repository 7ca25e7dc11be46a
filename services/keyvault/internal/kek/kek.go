// Package kek holds the key encryption key (KEK) keyring that wraps the
// keyvault's data keys. A keyring has one or more numbered 32-byte AES-256
// keys; the highest number wraps new data keys, and every number still
// listed unwraps. It loads from a file of mode 0600 or from the text of an
// environment variable.
//
// Keyring text has one version per line, "<number> <base64 key>". Blank
// lines and lines starting with '#' are ignored. In an environment variable,
// ';' may separate versions instead of line breaks.
package kek

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// KeyLen is the length of each KEK version in bytes (AES-256).
const KeyLen = 32

// Sentinel errors.
var (
	ErrNoKEK          = errors.New("keyvault: no key encryption key configured")
	ErrInvalidKeyring = errors.New("keyvault: invalid key encryption keyring")
	ErrUnknownVersion = errors.New("keyvault: key encryption key version not in keyring")
	ErrReadOnly       = errors.New("keyvault: key encryption keyring is read-only")
	ErrInsecureFile   = errors.New("keyvault: key encryption key file is readable by others")
)

// Keyring is a set of KEK versions. It is safe for concurrent use.
type Keyring struct {
	path string // empty for a keyring read from the environment

	mu       sync.RWMutex
	keys     map[int][]byte
	versions []int // sorted ascending
}

var _ sealing.KEK = (*Keyring)(nil)

// Parse reads keyring text, as found in an environment variable. The
// resulting keyring cannot rotate, because it has nowhere to write.
func Parse(text string) (*Keyring, error) {
	keys, err := parse(strings.ReplaceAll(text, ";", "\n"))
	if err != nil {
		return nil, err
	}

	return newKeyring("", keys), nil
}

// LoadFile reads a keyring file, which must be a regular file that only its
// owner can read or write (mode 0600 or stricter).
func LoadFile(path string) (*Keyring, error) {
	keys, err := readFile(path)
	if err != nil {
		return nil, err
	}

	return newKeyring(path, keys), nil
}

func readFile(path string) (map[int][]byte, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: file %s does not exist; create one with "+
			"`nodex dev` or set NODEX_KEYVAULT_KEK", ErrNoKEK, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading keyring file %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidKeyring, path)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s",
			ErrInsecureFile, path, info.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading keyring file %s: %w", path, err)
	}
	defer clear(data)

	keys, err := parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("parsing keyring file %s: %w", path, err)
	}

	return keys, nil
}

// parse never quotes a line, because a line holds key material.
func parse(text string) (map[int][]byte, error) {
	keys := map[int][]byte{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		num, b64, ok := strings.Cut(line, " ")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%w: line %d is not \"<version number> <base64 key>\"",
				ErrInvalidKeyring, i+1)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(key) != KeyLen {
			return nil, fmt.Errorf("%w: line %d: the key must be %d bytes in standard base64",
				ErrInvalidKeyring, i+1, KeyLen)
		}
		if _, dup := keys[v]; dup {
			return nil, fmt.Errorf("%w: version %d appears twice", ErrInvalidKeyring, v)
		}
		keys[v] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the keyring lists no key", ErrNoKEK)
	}

	return keys, nil
}

func newKeyring(path string, keys map[int][]byte) *Keyring {
	return &Keyring{path: path, keys: keys, versions: slices.Sorted(maps.Keys(keys))}
}

// CurrentVersion implements [sealing.KEK].
func (k *Keyring) CurrentVersion() int {
	k.mu.RLock()
	defer k.mu.RUnlock()

	return k.versions[len(k.versions)-1]
}

// Versions returns the KEK versions in the keyring, ascending.
func (k *Keyring) Versions() []int {
	k.mu.RLock()
	defer k.mu.RUnlock()

	return slices.Clone(k.versions)
}

// Wrap implements [sealing.KEK]. The KEK version is bound into the
// associated data, so a wrapped key relabelled with another version fails.
func (k *Keyring) Wrap(_ context.Context, dek, aad []byte) ([]byte, int, error) {
	k.mu.RLock()
	v := k.versions[len(k.versions)-1]
	key := k.keys[v]
	k.mu.RUnlock()

	wrapped, err := sealing.GCMSeal(key, dek, bindVersion(aad, v))
	if err != nil {
		return nil, 0, err
	}

	return wrapped, v, nil
}

// Unwrap implements [sealing.KEK]. A file keyring that lacks the version
// reads its file again once, so a version added by another replica sharing
// the file is picked up.
func (k *Keyring) Unwrap(_ context.Context, version int, wrapped, aad []byte) ([]byte, error) {
	key, err := k.key(version)
	if errors.Is(err, ErrUnknownVersion) && k.path != "" {
		if rerr := k.reload(); rerr != nil {
			return nil, rerr
		}
		key, err = k.key(version)
	}
	if err != nil {
		return nil, err
	}

	return sealing.GCMOpen(key, wrapped, bindVersion(aad, version))
}

func (k *Keyring) key(version int) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()

	key, ok := k.keys[version]
	if !ok {
		return nil, fmt.Errorf("%w: version %d", ErrUnknownVersion, version)
	}

	return key, nil
}

func (k *Keyring) reload() error {
	keys, err := readFile(k.path)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()

	k.keys, k.versions = keys, slices.Sorted(maps.Keys(keys))

	return nil
}

func bindVersion(aad []byte, version int) []byte {
	out := append([]byte("nodex/v1/keyvault/kek\x00"), aad...)

	return binary.BigEndian.AppendUint64(out, uint64(version))
}

// Rotate adds a new random KEK version to the keyring file and makes it
// current. It returns [ErrReadOnly] for a keyring read from the
// environment: add a version to the variable and restart instead.
func (k *Keyring) Rotate() (int, error) {
	if k.path == "" {
		return 0, fmt.Errorf("%w: it was read from the environment; add a line "+
			"\"<next version> <base64 key>\" to NODEX_KEYVAULT_KEK and restart", ErrReadOnly)
	}
	k.mu.Lock()
	defer k.mu.Unlock()

	next := k.versions[len(k.versions)-1] + 1
	key := make([]byte, KeyLen)
	if _, err := rand.Read(key); err != nil {
		return 0, fmt.Errorf("drawing key encryption key: %w", err)
	}
	keys := maps.Clone(k.keys)
	keys[next] = key
	if err := writeFile(k.path, keys, false); err != nil {
		return 0, err
	}
	k.keys, k.versions = keys, slices.Sorted(maps.Keys(keys))

	return next, nil
}

// GenerateFile creates a keyring file at path, mode 0600, holding one
// random version. It fails if the file exists, so it never replaces a key
// that wraps stored data.
func GenerateFile(path string) error {
	key := make([]byte, KeyLen)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("drawing key encryption key: %w", err)
	}

	return writeFile(path, map[int][]byte{1: key}, true)
}

// writeFile replaces path atomically: a reader sees the old or the new
// keyring, never a partial one. With exclusive set it links the new file
// into place instead, which fails if path exists.
func writeFile(path string, keys map[int][]byte, exclusive bool) error {
	var buf bytes.Buffer
	buf.WriteString("# NodeX keyvault key encryption keys: <version> <base64 key>\n")
	for _, v := range slices.Sorted(maps.Keys(keys)) {
		fmt.Fprintf(&buf, "%d %s\n", v, base64.StdEncoding.EncodeToString(keys[v]))
	}
	defer clear(buf.Bytes())

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating keyring directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".kek-*")
	if err != nil {
		return fmt.Errorf("creating temporary keyring file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename

	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if exclusive {
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("creating keyring file: %w", err)
		}

		return nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing keyring file %s: %w", path, err)
	}

	return nil
}
