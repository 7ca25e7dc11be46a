package scan

import (
	"bytes"
	"encoding/hex"
	"slices"
	"sort"
)

// Hex dumps (xxd, hexdump, od) write a few bytes per line behind an offset
// column and often in front of an ASCII column, so a key longer than one
// line is split into pieces that no single-line scan can read. matchDumps
// recognises dump lines, joins the bytes of consecutive lines of one dump,
// and maps each key found back to the hex groups and ASCII characters that
// show its bytes.
//
// A dump line is
//
//	[offset[:]] group group ... [ASCII column]
//
// with at least an offset or an ASCII column, because a line of groups alone
// is left to hexRuns, which already joins such lines (od -An, xxd -p). The
// offset has at least minDumpOffset digits and ends with a colon (xxd) or
// differs in width from the groups (hexdump, od). Groups are set apart by 1
// to maxDumpGap spaces and all have the width of the first, except that the
// last may be shorter. The ASCII column is bare (xxd), between bars
// (hexdump -C) or between > and < (od -z), and is accepted only when it
// shows exactly the line's bytes, printable ones as themselves and others
// as a dot. That check also places the column when its first characters
// look like hex groups, and determines whether each group is a
// little-endian word (hexdump's default 16-bit words, xxd -e).
//
// NOTE: lines of groups alone (xxd -p, xxd -i, od -An) stay with hexRuns,
// which redacts the whole run, not only the key's lines. od -An writes "*"
// for repeated lines without an offset that gives their number, so a key
// with a repeated 16-byte stretch is not found in it.

const (
	minDumpOffset = 4
	maxDumpOffset = 16
	// maxDumpGap is the widest gap between two groups of a dump line: one
	// space in xxd and od, two in the middle of a hexdump -C line, four in
	// hexdump -x.
	maxDumpGap = 4
)

// dumpLine is one parsed line of a dump.
type dumpLine struct {
	start, end int  // the line in out, without its line break
	offset     span // offset digits, empty when the line has none
	colon      bool
	groups     []span // digits of each group
	width      int    // digits in the first group
	nbytes     int
	ascii      span // ASCII column characters, empty when the line has none
	asciiOpen  byte // '|', '>' or 0 for a bare column
	// forward and swapped report whether the ASCII column matches the
	// bytes in the order written or with each group's bytes reversed.
	forward, swapped bool
	firstByte        int // index of the line's first byte in its dump
}

// hexDump is a run of consecutive dump lines of one layout, with offsets
// that follow on from each other.
type hexDump struct {
	lines  []dumpLine
	groups []dumpGroup
	// bases is the set of offset bases (bit 8, 10 or 16) under which every
	// line's offset is the previous one plus its byte count.
	bases  uint32
	nbytes int
	// forward and swapped report whether every line's ASCII column
	// matches its bytes as written, or with each group reversed. Both are true
	// when the dump has no ASCII column.
	forward, swapped bool
	// repeat is set after a "*" line, which hexdump and od write in place
	// of lines equal to the one before. The next line's offset gives
	// their number.
	repeat bool
}

// maxRepeatBytes bounds the bytes that the lines behind a "*" add to a
// dump, so that a dump of a large file of zeros costs no more than its
// text. It is longer than any provider key.
const maxRepeatBytes = 1024

// dumpGroup is one group of a dump: its digits in out, the index of its
// first byte among the dump's bytes and the index of its line.
type dumpGroup struct {
	digits    span
	firstByte int
	line      int
}

// findDumps returns the dumps in out, in order.
func findDumps(out []byte) []hexDump {
	var dumps []hexDump
	var cur *hexDump
	var scratch []span
	for start := 0; start < len(out); {
		end := bytes.IndexByte(out[start:], '\n')
		next := start + end + 1
		if end < 0 {
			end, next = len(out), len(out)
		} else {
			end += start
		}
		lineEnd := end
		if lineEnd > start && out[lineEnd-1] == '\r' {
			lineEnd--
		}
		if cur != nil && !cur.repeat && lineEnd-start == 1 && out[start] == '*' && cur.repeatable() {
			cur.repeat = true
			start = next
			continue
		}
		l, ok := parseDumpLine(out, start, lineEnd, scratch[:0])
		scratch = l.groups[:0]
		copies := 0
		switch {
		case !ok:
			cur = nil
		case cur != nil && cur.accepts(out, &l, &copies):
			cur.addCopies(copies)
			cur.add(l)
		default:
			dumps = append(dumps, hexDump{bases: offsetBases(out, l.offset), forward: true, swapped: true})
			cur = &dumps[len(dumps)-1]
			cur.add(l)
		}
		start = next
	}
	return dumps
}

// add appends l to d, copying its groups out of the parser's scratch space.
func (d *hexDump) add(l dumpLine) {
	l.firstByte = d.nbytes
	at := d.nbytes
	for _, g := range l.groups {
		d.groups = append(d.groups, dumpGroup{digits: g, firstByte: at, line: len(d.lines)})
		at += (g.end - g.start) / 2
	}
	l.groups = nil // the dump's groups replace them
	d.nbytes = at
	if l.ascii.end > l.ascii.start {
		d.forward, d.swapped = d.forward && l.forward, d.swapped && l.swapped
	}
	d.lines = append(d.lines, l)
}

// repeatable reports whether a "*" line may follow d: its lines have
// offsets, which give the number of lines left out, and its last line is
// full.
func (d *hexDump) repeatable() bool {
	first, prev := &d.lines[0], &d.lines[len(d.lines)-1]
	return first.offset.end > first.offset.start && prev.nbytes == first.nbytes
}

// addCopies appends copies of d's last line, which stand for the lines that
// a "*" left out. They show their bytes with the last line's text.
func (d *hexDump) addCopies(copies int) {
	prev := d.lines[len(d.lines)-1]
	from := len(d.groups) - len(prev.groupsOf(d))
	groups := d.groups[from:]
	for range copies {
		line := prev
		line.firstByte = d.nbytes
		for _, g := range groups[:len(groups):len(groups)] {
			d.groups = append(d.groups, dumpGroup{digits: g.digits,
				firstByte: g.firstByte - prev.firstByte + d.nbytes, line: len(d.lines)})
		}
		d.nbytes += prev.nbytes
		d.lines = append(d.lines, line)
	}
	d.repeat = false
}

// groupsOf returns l's groups among d's, l being d's last line.
func (l *dumpLine) groupsOf(d *hexDump) []dumpGroup {
	n := 0
	for n < len(d.groups) && d.groups[len(d.groups)-1-n].line == len(d.lines)-1 {
		n++
	}
	return d.groups[len(d.groups)-n:]
}

// accepts reports whether l continues d: the same layout, a previous line
// that was full, and an offset that follows on from the previous one. After
// a "*" line the offset may skip whole lines, and copies is set to how many
// of them to add, at most maxRepeatBytes in all.
func (d *hexDump) accepts(out []byte, l *dumpLine, copies *int) bool {
	first, prev := &d.lines[0], &d.lines[len(d.lines)-1]
	if l.offset.end-l.offset.start != first.offset.end-first.offset.start ||
		l.colon != first.colon || l.asciiOpen != first.asciiOpen ||
		(l.ascii.end > l.ascii.start) != (first.ascii.end > first.ascii.start) ||
		prev.nbytes != first.nbytes {
		return false
	}

	// Only the last group of a dump may be narrower, so a line of one
	// narrow group may end it.
	if l.width != first.width && (l.width > first.width || len(l.groups) > 1) {
		return false
	}
	if first.ascii.end > first.ascii.start && !(l.forward && d.forward || l.swapped && d.swapped) {
		return false
	}
	if l.offset.end == l.offset.start {
		return true
	}

	bases := d.bases
	skipped := uint64(0)
	for _, base := range []uint32{16, 8, 10} {
		if bases&(1<<base) == 0 {
			continue
		}
		p, ok1 := parseOffset(out[prev.offset.start:prev.offset.end], base)
		c, ok2 := parseOffset(out[l.offset.start:l.offset.end], base)
		p += uint64(prev.nbytes)
		switch {
		case !ok1 || !ok2 || c < p:
			bases &^= 1 << base
		case c == p:
		case d.repeat && (c-p)%uint64(prev.nbytes) == 0:
			// When more than one base fits, the first in this order
			// sets the count.
			if skipped == 0 {
				skipped = c - p
			}
		default:
			bases &^= 1 << base
		}
	}
	if bases == 0 || d.repeat && skipped == 0 {
		return false
	}
	d.bases = bases
	*copies = int(min(skipped, maxRepeatBytes) / uint64(prev.nbytes))
	return true
}

// offsetBases returns the set of bases in which the digits at s parse.
func offsetBases(out []byte, s span) uint32 {
	var bases uint32
	for _, base := range []uint32{8, 10, 16} {
		if _, ok := parseOffset(out[s.start:s.end], base); ok {
			bases |= 1 << base
		}
	}
	return bases
}

// parseOffset parses digits, at most maxDumpOffset of them, in base.
func parseOffset(digits []byte, base uint32) (uint64, bool) {
	var v uint64
	for _, c := range digits {
		var d uint32
		switch {
		case c >= '0' && c <= '9':
			d = uint32(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint32(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint32(c-'A') + 10
		}
		if d >= base {
			return 0, false
		}
		v = v*uint64(base) + uint64(d)
	}
	return v, true
}

// parseDumpLine parses out[start:end] as a dump line, appending its groups
// to groups. Ordinary text fails on its first word, so the cost per line is
// small unless the line looks like hex.
func parseDumpLine(out []byte, start, end int, groups []span) (dumpLine, bool) {
	l := dumpLine{start: start, end: end, groups: groups}
	i := start
	j := hexDigitsEnd(out, i, end)
	switch {
	case j-i >= minDumpOffset && j-i <= maxDumpOffset && j < end && out[j] == ':':
		l.offset, l.colon, i = span{i, j}, true, j+1
	case j-i >= minDumpOffset && j-i <= maxDumpOffset && j < end && out[j] == ' ':
		// An offset without a colon differs in width from the groups
		// after it; otherwise the line is plain groups.
		k := j
		for k < end && out[k] == ' ' {
			k++
		}
		if hexDigitsEnd(out, k, end)-k == j-i {
			return l, false
		}
		l.offset, i = span{i, j}, j
	case j == i && i < end && out[i] == ' ':
		// No offset: od -An. Such a line needs an ASCII column.
	default:
		return l, false
	}

	// Read every group, then keep the longest prefix with valid widths.
	for p := i; ; {
		q := p
		for q < end && out[q] == ' ' {
			q++
		}
		if q == end || q == p || q-p > maxDumpGap {
			break
		}
		r := hexDigitsEnd(out, q, end)
		if r == q || r < end && out[r] != ' ' {
			break
		}
		l.groups = append(l.groups, span{q, r})
		p = r
	}
	all := len(l.groups)
	valid := validGroupPrefix(l.groups)
	if valid == 0 {
		return l, false
	}
	l.width = l.groups[0].end - l.groups[0].start

	// The ASCII column, if any, starts after one of the valid groups.
	for k := valid; k >= 1; k-- {
		if l.placeASCII(out, k, all) {
			l.groups = l.groups[:k]
			l.nbytes = digitCount(l.groups) / 2
			return l, true
		}
	}
	// No ASCII column: the rest of the line must be blank, and the line
	// must have an offset.
	if valid != all || l.offset.end == l.offset.start {
		return l, false
	}
	for p := l.groups[all-1].end; p < end; p++ {
		if out[p] != ' ' {
			return l, false
		}
	}
	l.nbytes = digitCount(l.groups) / 2
	return l, true
}

// placeASCII reports whether an ASCII column that shows the bytes of the
// first k groups ends the line, and records it. all is the number of groups
// read, some of which may be the column's own characters.
func (l *dumpLine) placeASCII(out []byte, k, all int) bool {
	n := digitCount(l.groups[:k]) / 2
	gapStart := l.groups[k-1].end
	for _, open := range []byte{'|', '>', 0} {
		colEnd, colStart, before := l.end, l.end-n, l.end-n
		if open != 0 {
			closing := byte('|')
			if open == '>' {
				closing = '<'
			}
			if out[l.end-1] != closing {
				continue
			}
			colEnd, colStart, before = l.end-1, l.end-1-n, l.end-2-n
			if before < 0 || out[before] != open {
				continue
			}
		}
		// At least two spaces (one before a delimiter) separate the
		// groups from the column, and only spaces.
		minGap := 2
		if open != 0 {
			minGap = 1
		}
		if before-gapStart < minGap {
			continue
		}
		if k < all {
			if before > l.groups[k].start {
				continue
			}
		} else if !allSpaces(out[gapStart:before]) {
			continue
		}
		fwd, swp := asciiShows(out, l.groups[:k], out[colStart:colEnd])
		if !fwd && !swp {
			continue
		}
		l.ascii, l.asciiOpen, l.forward, l.swapped = span{colStart, colEnd}, open, fwd, swp
		return true
	}
	return false
}

// asciiShows reports whether col shows the bytes of groups in the order
// written, and with each group's bytes reversed.
func asciiShows(out []byte, groups []span, col []byte) (forward, swapped bool) {
	forward, swapped = true, true
	at := 0
	for _, g := range groups {
		n := (g.end - g.start) / 2
		for b := 0; b < n; b++ {
			v := hexByteAt(out, g.start+2*b)
			forward = forward && asciiCharShows(col[at+b], v)
			swapped = swapped && asciiCharShows(col[at+n-1-b], v)
		}
		if !forward && !swapped {
			return false, false
		}
		at += n
	}
	return forward, swapped
}

// asciiCharShows reports whether c is how a dump's ASCII column shows v.
func asciiCharShows(c, v byte) bool {
	if v >= 0x20 && v < 0x7f {
		return c == v
	}
	return c == '.'
}

func hexByteAt(out []byte, i int) byte {
	return unhex(out[i])<<4 | unhex(out[i+1])
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// validGroupPrefix returns how many leading groups have valid widths: even,
// none wider than the first, and only the last narrower.
func validGroupPrefix(groups []span) int {
	if len(groups) == 0 {
		return 0
	}
	width := groups[0].end - groups[0].start
	for i, g := range groups {
		w := g.end - g.start
		if w%2 != 0 || w > width {
			return i
		}
		if w < width {
			return i + 1
		}
	}
	return len(groups)
}

func digitCount(groups []span) int {
	n := 0
	for _, g := range groups {
		n += g.end - g.start
	}
	return n
}

func hexDigitsEnd(out []byte, i, end int) int {
	for i < end && isHexByte(out[i]) {
		i++
	}
	return i
}

func allSpaces(b []byte) bool {
	for _, c := range b {
		if c != ' ' {
			return false
		}
	}
	return true
}

// dumpOrder is one way to read a dump's bytes.
type dumpOrder int

const (
	orderWritten  dumpOrder = iota // bytes in the order written
	orderSwapped                   // each group a little-endian word
	orderBackward                  // all digits read backwards
)

// dumpPiece is one reading of a dump in the decoded buffer.
type dumpPiece struct {
	start, end int
	dump       int
	order      dumpOrder
}

// matchDumps finds keys in the dumps of out. It returns the spans to
// redact, the findings, and each dump line's span up to its last hex group,
// which hexRuns skips so that a key in a dump is found once.
//
// Each dump's bytes are checked as written and, when no ASCII column fixes
// the byte order and the groups are wider than a byte, with each group read
// as a little-endian word. As for other hex, the bytes are also checked
// reversed (the hex of a reversed key) and decoded from the digits read
// backwards. A key's bytes are redacted in every hex group and ASCII column
// character that shows them, one [REDACTED] per line and column, so the
// offsets and the other bytes stay in place.
func matchDumps(out []byte, fps *Fingerprints) ([]span, []Finding, []span) {
	dumps := findDumps(out)
	if len(dumps) == 0 {
		return nil, nil, nil
	}
	var hexSpans []span
	for _, d := range dumps {
		for i := range d.lines {
			l := &d.lines[i]
			hexSpans = append(hexSpans, span{l.start, d.lineHexEnd(i)})
		}
	}

	var decoded []byte
	var pieces []dumpPiece
	add := func(dump int, order dumpOrder, b []byte) {
		pieces = append(pieces, dumpPiece{start: len(decoded), end: len(decoded) + len(b),
			dump: dump, order: order})
		decoded = append(append(decoded, b...), '\n')
	}
	var digits, bufBytes []byte
	for di := range dumps {
		d := &dumps[di]
		digits = d.appendDigits(out, digits[:0])
		bufBytes = slices.Grow(bufBytes[:0], len(digits)/2)[:len(digits)/2]
		if _, err := hex.Decode(bufBytes, digits); err != nil {
			continue
		}
		if d.forward {
			add(di, orderWritten, bufBytes)
		}
		if d.swapped && d.lines[0].width > 2 && !(d.forward && d.hasASCII()) {
			add(di, orderSwapped, d.swapBytes(bufBytes))
		}
	}
	forwardEnd := len(decoded)
	for di := range dumps {
		digits = dumps[di].appendDigits(out, digits[:0])
		slices.Reverse(digits)
		bufBytes = slices.Grow(bufBytes[:0], len(digits)/2)[:len(digits)/2]
		if _, err := hex.Decode(bufBytes, digits); err == nil {
			add(di, orderBackward, bufBytes)
		}
	}
	if len(pieces) == 0 {
		return nil, nil, hexSpans
	}

	hits, found := matchDecodedHex(decoded, forwardEnd, fps)
	var spans []span
	for _, hit := range hits {
		i := sort.Search(len(pieces), func(i int) bool { return pieces[i].end > hit.start })
		if i == len(pieces) {
			continue
		}
		p := pieces[i]
		a, b := max(hit.start, p.start)-p.start, min(hit.end, p.end)-p.start
		if a >= b {
			continue
		}
		d := &dumps[p.dump]
		if p.order == orderBackward {
			a, b = d.nbytes-b, d.nbytes-a
		}
		spans = d.redactBytes(spans, a, b)
	}
	return spans, found, hexSpans
}

func (d *hexDump) hasASCII() bool { return d.lines[0].ascii.end > d.lines[0].ascii.start }

// lineHexEnd returns where line i's hex groups end.
func (d *hexDump) lineHexEnd(i int) int {
	g := sort.Search(len(d.groups), func(g int) bool { return d.groups[g].line > i })
	return d.groups[g-1].digits.end
}

// appendDigits appends the digits of every group of d to dst.
func (d *hexDump) appendDigits(out, dst []byte) []byte {
	for _, g := range d.groups {
		dst = append(dst, out[g.digits.start:g.digits.end]...)
	}
	return dst
}

// swapBytes returns b, the dump's bytes as written, with each group's bytes
// reversed.
func (d *hexDump) swapBytes(b []byte) []byte {
	s := make([]byte, len(b))
	for i, g := range d.groups {
		end := d.nbytes
		if i+1 < len(d.groups) {
			end = d.groups[i+1].firstByte
		}
		for k := g.firstByte; k < end; k++ {
			s[k] = b[g.firstByte+end-1-k]
		}
	}
	return s
}

// redactBytes appends to spans the hex groups and ASCII characters that show
// bytes [a, b) of d: per line, one span from the first to the last group
// involved and one over the column's characters. A column that shows each
// group reversed is redacted over whole groups.
func (d *hexDump) redactBytes(spans []span, a, b int) []span {
	g := sort.Search(len(d.groups), func(g int) bool {
		return d.groups[g].firstByte+(d.groups[g].digits.end-d.groups[g].digits.start)/2 > a
	})
	for g < len(d.groups) && d.groups[g].firstByte < b {
		line := d.groups[g].line
		from := g
		for g+1 < len(d.groups) && d.groups[g+1].line == line && d.groups[g+1].firstByte < b {
			g++
		}
		spans = append(spans, span{d.groups[from].digits.start, d.groups[g].digits.end})
		l := &d.lines[line]
		if l.ascii.end > l.ascii.start {
			lo, hi := max(a, l.firstByte), min(b, l.firstByte+l.nbytes)
			if !d.forward {
				lo = d.groups[from].firstByte
				hi = d.groups[g].firstByte + (d.groups[g].digits.end-d.groups[g].digits.start)/2
			}
			spans = append(spans, span{l.ascii.start + lo - l.firstByte, l.ascii.start + hi - l.firstByte})
		}
		g++
	}
	return spans
}
