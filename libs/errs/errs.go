// Package errs holds the coded errors that NodeX services return on the bus.
//
// Every error a reply may carry is an entry of schemas/errors.json, generated
// into this package, so the numeric code, name and public text have one
// source. A reply carries only {code, name, description}; the internal cause
// attached with [Error.Wrap] stays in the service's log.
package errs

//go:generate go run ./internal/gencat ../../schemas/errors.json catalogue.go

import (
	"errors"
	"fmt"
)

// Error is a coded error. The catalogue entries are shared values: derive a
// detailed copy with [Error.Withf] or attach a cause with [Error.Wrap], never
// modify an entry.
type Error struct {
	// Code is the stable numeric code from schemas/errors.json.
	Code int `json:"code"`
	// Name is the stable snake_case name of the code.
	Name string `json:"name"`
	// Class groups codes: invalid, denied, not_found, conflict, unavailable,
	// internal.
	Class string `json:"class,omitempty"`
	// Description is the public text. It may name the offending value, never
	// a secret.
	Description string `json:"description"`

	cause error
}

// Error returns "name: description".
func (e *Error) Error() string {
	return e.Name + ": " + e.Description
}

// Unwrap returns the internal cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is a coded error with the same code, so that
// errors.Is(err, errs.NotFound) matches any detailed copy of the entry.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)

	return ok && t.Code == e.Code
}

// Withf returns a copy of e whose description is the public detail, formatted
// as with fmt.Sprintf. The detail replaces the generic text, so it must say
// what was wrong and how to fix it.
func (e *Error) Withf(format string, args ...any) *Error {
	c := *e
	c.Description = fmt.Sprintf(format, args...)

	return &c
}

// Wrap returns a copy of e that carries cause for logs and errors.Is; the
// cause never reaches a reply.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.cause = cause

	return &c
}

// Public returns the wire form of e: code, name and description only.
func (e *Error) Public() *Error {
	return &Error{Code: e.Code, Name: e.Name, Class: e.Class, Description: e.Description}
}

// From returns the coded error in err's chain, or [Internal] wrapping err when
// there is none. From(nil) returns nil.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}

	return Internal.Wrap(err)
}

// Lookup returns the catalogue entry for code, or nil when the code is not in
// the catalogue (for example a reply from a newer peer).
func Lookup(code int) *Error {
	return catalogue[code]
}
