package bundle

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Archive limits. They bound what [DecodeFiles] allocates from untrusted
// bytes; codesec applies tighter limits to submissions.
const (
	MaxFiles         = 256
	MaxFileNameBytes = 255
	MaxArchiveBytes  = 16 << 20
)

var archiveMagic = []byte("NXA1")

// File is one file of a code archive. Name is a relative slash-separated
// path, checked by [CheckFileName].
type File struct {
	Name string
	Data []byte
}

// CheckFileName returns an error when name could escape or confuse the work
// directory that a sandbox writes the file into: empty names, absolute paths,
// backslashes, "." or ".." elements, empty elements, control characters,
// invalid UTF-8, or more than [MaxFileNameBytes] bytes.
func CheckFileName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty file name", ErrInvalidInput)
	case len(name) > MaxFileNameBytes:
		return fmt.Errorf("%w: file name of %d bytes exceeds %d",
			ErrInvalidInput, len(name), MaxFileNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: file name %q is not valid UTF-8", ErrInvalidInput, name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: file name %q is absolute; use a relative path",
			ErrInvalidInput, name)
	case strings.Contains(name, `\`):
		return fmt.Errorf("%w: file name %q contains a backslash; use /", ErrInvalidInput, name)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: file name %q contains a control character", ErrInvalidInput, name)
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w: file name %q contains the path element %q",
				ErrInvalidInput, name, elem)
		}
	}

	return nil
}

// EncodeFiles returns the canonical archive encoding of files: sorted by
// name, so the same set of files always has the same SHA-256. Names must pass
// [CheckFileName] and be unique.
func EncodeFiles(files []File) ([]byte, error) {
	if len(files) == 0 || len(files) > MaxFiles {
		return nil, fmt.Errorf("%w: %d files, want 1 to %d", ErrInvalidInput, len(files), MaxFiles)
	}
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })

	size := len(archiveMagic) + 4
	for i, f := range sorted {
		if err := CheckFileName(f.Name); err != nil {
			return nil, err
		}
		if i > 0 && sorted[i-1].Name == f.Name {
			return nil, fmt.Errorf("%w: duplicate file name %q", ErrInvalidInput, f.Name)
		}
		size += 2 + len(f.Name) + 4 + len(f.Data)
	}
	if size > MaxArchiveBytes {
		return nil, fmt.Errorf("%w: archive of %d bytes exceeds %d",
			ErrInvalidInput, size, MaxArchiveBytes)
	}

	out := make([]byte, 0, size)
	out = append(out, archiveMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(sorted)))
	for _, f := range sorted {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f.Name)))
		out = append(out, f.Name...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(f.Data)))
		out = append(out, f.Data...)
	}

	return out, nil
}

// DecodeFiles parses an archive made by [EncodeFiles]. It rejects anything
// EncodeFiles would not produce: bad names, duplicates, unsorted entries,
// trailing bytes.
func DecodeFiles(data []byte) ([]File, error) {
	if len(data) > MaxArchiveBytes {
		return nil, fmt.Errorf("%w: archive of %d bytes exceeds %d",
			ErrMalformed, len(data), MaxArchiveBytes)
	}
	r := reader{buf: data}
	if magic := r.next(len(archiveMagic)); string(magic) != string(archiveMagic) {
		return nil, fmt.Errorf("%w: archive magic", ErrMalformed)
	}
	count := r.uint32()
	if r.err != nil || count == 0 || count > MaxFiles {
		return nil, fmt.Errorf("%w: archive file count %d", ErrMalformed, count)
	}

	files := make([]File, 0, count)
	for i := range int(count) {
		name := string(r.next(int(r.uint16())))
		body := r.next(int(r.uint32()))
		if r.err != nil {
			return nil, fmt.Errorf("%w: archive entry %d truncated", ErrMalformed, i)
		}
		if err := CheckFileName(name); err != nil {
			return nil, fmt.Errorf("%w: archive entry %d: %v", ErrMalformed, i, err)
		}
		if i > 0 && files[i-1].Name >= name {
			return nil, fmt.Errorf("%w: archive entry %q out of order", ErrMalformed, name)
		}
		files = append(files, File{Name: name, Data: body})
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after archive", ErrMalformed, len(r.buf))
	}

	return files, nil
}

// reader consumes big-endian length-prefixed fields and remembers the first
// short read, so parsers check once per step.
type reader struct {
	buf []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf) {
		r.err = ErrMalformed
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]

	return b
}

func (r *reader) uint16() uint16 {
	b := r.next(2)
	if b == nil {
		return 0
	}

	return binary.BigEndian.Uint16(b)
}

func (r *reader) uint32() uint32 {
	b := r.next(4)
	if b == nil {
		return 0
	}

	return binary.BigEndian.Uint32(b)
}
