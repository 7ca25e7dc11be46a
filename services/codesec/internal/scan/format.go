package scan

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// foldPercent applies Python's printf-style "format % values" to the
// folded format string f, whose "%" operator is at f.end. Conversions of
// constant values are done as Python does them, except that width and
// flags are ignored: %s and %d of a constant, %c of a code point. Values
// computed at run time, and the conversions left unevaluated (%x, %f, %r,
// mapping keys), become holeMark and make the result partial. So
// "%c%s" % (105, "mport " + name) gives "import …". It fails on a format
// that Python would reject.
func (a *analyzer) foldPercent(f folded, depth int) (folded, bool) {
	start := f.end + 1
	end := a.operandEnd(start)
	if end < 0 {
		return folded{}, false
	}
	values := a.formatValues(start, end, depth)
	out := folded{end: end, pieces: true, literals: append([]string{}, f.literals...)}
	var b strings.Builder
	format := f.value
	next := 0
	take := func() (formatValue, bool) {
		if next >= len(values) {
			return formatValue{}, false
		}
		next++
		return values[next-1], true
	}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			b.WriteByte(format[i])
			continue
		}
		spec, size, ok := parseConversion(format[i+1:])
		if !ok {
			return folded{}, false
		}
		i += size
		if spec.conversion == '%' {
			b.WriteByte('%')
			continue
		}
		for range spec.starred {
			take() // a width or precision given as "*" uses up a value
		}
		value, ok := formatValue{}, true
		if !spec.keyed {
			value, ok = take()
		}
		text, known := convert(spec, value, ok)
		if !known {
			out.partial = true
		}
		if ok && value.complete {
			out.literals = append(out.literals, value.literals...)
		}
		b.WriteString(text)
	}
	out.value = b.String()
	out.complete = !out.partial

	return out, true
}

// conversionSpec is one "%" conversion of a printf-style format.
type conversionSpec struct {
	conversion byte
	keyed      bool // "%(name)s" reads a mapping
	starred    int  // width and precision given as "*", each taking a value
	precision  int  // -1 when not given
}

// parseConversion reads the conversion after a "%": an optional mapping
// key, flags, width, precision, length modifier and the conversion type.
// It returns the spec and the bytes it read.
func parseConversion(s string) (conversionSpec, int, bool) {
	spec := conversionSpec{precision: -1}
	i := 0
	if i < len(s) && s[i] == '(' {
		close := strings.IndexByte(s, ')')
		if close < 0 {
			return spec, 0, false
		}
		spec.keyed, i = true, close+1
	}
	for i < len(s) && strings.IndexByte("#0- +", s[i]) >= 0 {
		i++
	}
	digits := func() string {
		from := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		return s[from:i]
	}
	if i < len(s) && s[i] == '*' {
		spec.starred++
		i++
	} else {
		digits()
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i < len(s) && s[i] == '*' {
			spec.starred++
			i++
		} else if n, err := strconv.Atoi(digits()); err == nil {
			spec.precision = n
		} else {
			spec.precision = 0
		}
	}
	for i < len(s) && strings.IndexByte("hlL", s[i]) >= 0 {
		i++
	}
	if i >= len(s) || strings.IndexByte("diouxXeEfFgGcrsa%", s[i]) < 0 {
		return spec, 0, false
	}
	spec.conversion = s[i]

	return spec, i + 1, true
}

// formatValue is one value for a "%" format: a folded string, or an
// integer literal.
type formatValue struct {
	folded
	integer bool
	number  int
}

// convert returns the text of one conversion and whether it is known.
func convert(spec conversionSpec, value formatValue, present bool) (string, bool) {
	if !present || !value.complete && !value.integer {
		if present && spec.conversion == 's' && !value.integer {
			return value.value, false // the constant start of the value
		}
		return holeMark, false
	}
	number, isNumber := value.number, value.integer
	switch spec.conversion {
	case 's':
		text := value.value
		if isNumber {
			text = strconv.Itoa(number)
		}
		if spec.precision >= 0 && utf8.RuneCountInString(text) > spec.precision {
			text = string([]rune(text)[:spec.precision])
		}
		return text, true
	case 'd', 'i', 'u':
		if isNumber {
			return strconv.Itoa(number), true
		}
	case 'c':
		if isNumber && number >= 0 && number <= utf8.MaxRune {
			return string(rune(number)), true
		}
		if !isNumber && utf8.RuneCountInString(value.value) == 1 {
			return value.value, true
		}
	}

	return holeMark, false
}

// formatValues evaluates the right operand of "%" in the tokens
// [start, end): the elements of a tuple, or one value. A mapping or a
// name gives no values, so every conversion becomes holeMark.
func (a *analyzer) formatValues(start, end, depth int) []formatValue {
	t := a.tok(start)
	if t.is(tokOp, "(") && a.closing(start) == end-1 && a.isTuple(start) {
		var values []formatValue
		for _, r := range a.splitArgs(start) {
			values = append(values, a.formatValueIn(r[0], r[1], depth))
		}
		return values
	}
	if t.is(tokOp, "{") || end == start+1 && t.kind == tokName {
		return nil
	}

	return []formatValue{a.formatValueIn(start, end, depth)}
}

func (a *analyzer) formatValueIn(start, end, depth int) formatValue {
	if n, ok := a.intIn(start, end); ok {
		return formatValue{integer: true, number: n}
	}

	return formatValue{folded: a.partialIn(start, end, depth)}
}

// isTuple reports whether the brackets opened at open contain a tuple:
// "()" or elements separated by commas.
func (a *analyzer) isTuple(open int) bool {
	close := a.closing(open)
	if close == open+1 {
		return true
	}

	return len(a.splitArgs(open)) > 1 || a.tok(close-1).is(tokOp, ",")
}

// operandEnd returns the index after the operand of a binary operator
// that starts at i: a literal, name or bracketed expression with the
// attribute accesses, calls and subscripts after it. It returns -1 when
// no operand starts at i.
func (a *analyzer) operandEnd(i int) int {
	t := a.tok(i)
	j := i + 1
	switch {
	case t.is(tokOp, "(") || t.is(tokOp, "[") || t.is(tokOp, "{"):
		j = a.closing(i) + 1
	case t.kind == tokString:
		for a.tok(j).kind == tokString {
			j++
		}
	case t.kind == tokName || t.kind == tokNumber:
	default:
		return -1
	}
	for {
		switch next := a.tok(j); {
		case next.is(tokOp, ".") && a.tok(j+1).kind == tokName:
			j += 2
		case next.is(tokOp, "(") || next.is(tokOp, "["):
			j = a.closing(j) + 1
		default:
			return j
		}
	}
}
