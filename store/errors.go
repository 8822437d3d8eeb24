package store

import (
	"errors"
	"fmt"
)

// Code classifies a domain error; the server maps each code to one HTTP status.
type Code string

const (
	Invalid      Code = "invalid"      // 422: the request is well-formed but not acceptable
	BadRequest   Code = "bad_request"  // 400: e.g. an unknown runtime
	NotFound     Code = "not_found"    // 404, also for other users' resources
	Conflict     Code = "conflict"     // 409: state or version conflicts
	Unauthorized Code = "unauthorized" // 401
	RateLimited  Code = "rate_limited" // 429
	Unavailable  Code = "unavailable"  // 503
	Internal     Code = "internal"     // 500: details are logged, never shown
)

// Error is a domain error whose Message is safe to show to the client.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds a domain error.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the domain code of err, Internal when it has none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal server error"
}
