package cli

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

// A backup file is one JSON header line, then the archive in chunks. The
// header carries a random 32-byte data key wrapped with HPKE
// (MLKEM768-X25519, HKDF-SHA256, AES-256-GCM) to one operator's public
// encryption key. Each chunk is a 4-byte big-endian length and the
// AES-256-GCM ciphertext of up to backupChunkSize bytes. The nonce is the
// chunk number. The additional data is the header, the chunk number and a
// last-chunk flag, so chunks cannot be reordered, dropped or cut off.

// backupFormat names the file format in the header.
const backupFormat = "nodex-backup/v1"

// backupChunkSize is the plaintext size of every chunk but the last.
const backupChunkSize = 1 << 20

// backupInfo is the HPKE info string that binds the wrapped key to this
// format.
var backupInfo = []byte("nodex/v1/backup")

// backupHeader is the first line of a backup file.
type backupHeader struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Recipient is the operator identity the data key is wrapped to, and
	// KeyVersion the version of its encryption key.
	Recipient  string `json:"recipient"`
	KeyVersion int    `json:"key_version"`
	// RootKey is the deployment's operator root public key, so restore can
	// check that it writes into the same deployment.
	RootKey    []byte `json:"root_key"`
	WrappedKey []byte `json:"wrapped_key"`
}

// backupWriter encrypts an archive stream into a backup file.
type backupWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	header []byte
	buf    []byte
	chunk  uint64
}

// newBackupWriter writes the header for creds' current encryption key and
// returns the writer of the archive. Close writes the last chunk.
func newBackupWriter(w io.Writer, creds *identity.Credentials) (*backupWriter, error) {
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	defer clear(dataKey)

	key := creds.CurrentHPKEKey()
	wrapped, err := hpke.Seal(key.Key.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(),
		backupInfo, dataKey)
	if err != nil {
		return nil, fmt.Errorf("wrapping the backup key: %w", err)
	}
	h := backupHeader{Format: backupFormat, Created: time.Now().UTC(), Recipient: creds.ID,
		KeyVersion: key.Version, RootKey: creds.RootKey, WrappedKey: wrapped}
	line, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return nil, fmt.Errorf("writing backup header: %w", err)
	}
	aead, err := newChunkAEAD(dataKey)
	if err != nil {
		return nil, err
	}

	return &backupWriter{w: w, aead: aead, header: line}, nil
}

func newChunkAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}

	return cipher.NewGCM(block)
}

// chunkAD returns the additional data of chunk n.
func chunkAD(header []byte, n uint64, last bool) []byte {
	ad := append([]byte{}, header...)
	ad = binary.BigEndian.AppendUint64(ad, n)
	if last {
		return append(ad, 1)
	}

	return append(ad, 0)
}

func chunkNonce(size int, n uint64) []byte {
	nonce := make([]byte, size)
	binary.BigEndian.PutUint64(nonce[size-8:], n)

	return nonce
}

// Write buffers p and writes every full chunk.
func (b *backupWriter) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	for len(b.buf) > backupChunkSize {
		if err := b.seal(b.buf[:backupChunkSize], false); err != nil {
			return 0, err
		}
		b.buf = b.buf[backupChunkSize:]
	}

	return len(p), nil
}

// Close writes the last chunk, which may be empty.
func (b *backupWriter) Close() error { return b.seal(b.buf, true) }

func (b *backupWriter) seal(plain []byte, last bool) error {
	ct := b.aead.Seal(nil, chunkNonce(b.aead.NonceSize(), b.chunk), plain,
		chunkAD(b.header, b.chunk, last))
	b.chunk++
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(ct)))
	if _, err := b.w.Write(n[:]); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	if _, err := b.w.Write(ct); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}

	return nil
}

// errBackupCorrupt is returned for a backup that fails authentication.
var errBackupCorrupt = errors.New("backup file is corrupt or was changed")

// backupReader decrypts a backup file.
type backupReader struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	header []byte
	Header backupHeader
	buf    []byte
	chunk  uint64
	done   bool
}

// readBackupHeader reads and parses the header line.
func readBackupHeader(r io.Reader) (*backupReader, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("reading backup header: %w", err)
	}
	var h backupHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Format != backupFormat {
		return nil, fmt.Errorf("not a %s file", backupFormat)
	}

	return &backupReader{r: br, header: line, Header: h}, nil
}

// unwrap opens the data key with creds.
func (b *backupReader) unwrap(creds *identity.Credentials) error {
	if creds.ID != b.Header.Recipient {
		return fmt.Errorf("backup is encrypted to %q, not to %q: pass --creds with its credentials",
			b.Header.Recipient, creds.ID)
	}
	key, err := creds.HPKEKeyVersion(b.Header.KeyVersion)
	if err != nil {
		return fmt.Errorf("backup needs encryption key version %d of %q: %w",
			b.Header.KeyVersion, creds.ID, err)
	}
	dataKey, err := hpke.Open(key.Key, hpke.HKDFSHA256(), hpke.AES256GCM(), backupInfo,
		b.Header.WrappedKey)
	if err != nil {
		return errBackupCorrupt
	}
	defer clear(dataKey)
	b.aead, err = newChunkAEAD(dataKey)

	return err
}

// Read returns decrypted archive bytes. It returns io.EOF only after the
// authenticated last chunk, and errBackupCorrupt for a cut-off file.
func (b *backupReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.done {
			if _, err := b.r.Peek(1); err != io.EOF {
				return 0, errBackupCorrupt // data after the last chunk
			}
			return 0, io.EOF
		}
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]

	return n, nil
}

func (b *backupReader) next() error {
	var n [4]byte
	if _, err := io.ReadFull(b.r, n[:]); err != nil {
		return errBackupCorrupt
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > backupChunkSize+uint32(b.aead.Overhead()) {
		return errBackupCorrupt
	}
	ct := make([]byte, size)
	if _, err := io.ReadFull(b.r, ct); err != nil {
		return errBackupCorrupt
	}
	nonce := chunkNonce(b.aead.NonceSize(), b.chunk)
	for _, last := range []bool{false, true} {
		plain, err := b.aead.Open(nil, nonce, ct, chunkAD(b.header, b.chunk, last))
		if err == nil {
			b.buf, b.done = plain, last
			b.chunk++
			return nil
		}
	}

	return errBackupCorrupt
}
