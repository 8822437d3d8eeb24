package store

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Code classifies a domain error; the server maps each code to one HTTP
// status and the UI to one page or flash.
type Code string

const (
	Invalid      Code = "invalid"      // 422: the request is well-formed but not acceptable
	BadRequest   Code = "bad_request"  // 400: e.g. an unknown runtime, a body that is not JSON
	NotFound     Code = "not_found"    // 404, also for other users' resources
	Conflict     Code = "conflict"     // 409: state or version conflicts
	Unauthorized Code = "unauthorized" // 401
	Forbidden    Code = "forbidden"    // 403: e.g. an operator's route called with a user's key
	TooLarge     Code = "too_large"    // 413: a request body (or a download) over the limit
	Gone         Code = "gone"         // 410: e.g. a session's sprite that no longer exists
	RateLimited  Code = "rate_limited" // 429
	Unavailable  Code = "unavailable"  // 503
	Internal     Code = "internal"     // 500: details are logged, never shown
)

// httpStatus is each code's HTTP status, for the API's responses and the
// UI's pages alike.
var httpStatus = map[Code]int{
	Invalid:      http.StatusUnprocessableEntity,
	BadRequest:   http.StatusBadRequest,
	NotFound:     http.StatusNotFound,
	Conflict:     http.StatusConflict,
	Unauthorized: http.StatusUnauthorized,
	Forbidden:    http.StatusForbidden,
	TooLarge:     http.StatusRequestEntityTooLarge,
	Gone:         http.StatusGone,
	RateLimited:  http.StatusTooManyRequests,
	Unavailable:  http.StatusServiceUnavailable,
	Internal:     http.StatusInternalServerError,
}

// SetRetryAfter sets h's Retry-After header (whole seconds, rounded up)
// when err says when to try again.
func SetRetryAfter(h http.Header, err error) {
	if e := AsError(err); e != nil && e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
}

// HTTPStatus is the status of err's code; 500 for an error that is not a
// domain error (its cause is logged, never shown).
func HTTPStatus(err error) int { return httpStatus[ErrorCode(err)] }

// Error is a domain error whose Message is safe to show to the client.
type Error struct {
	Code    Code
	Message string
	// Fields are a validation failure's problems, one per field (the 422's
	// list detail); nil for errors with a string detail.
	Fields []FieldError
	// Extra are further members of the error body, e.g. a quota's limit and
	// active count. Values are JSON-encodable.
	Extra map[string]any
	// RetryAfter, when set, tells the client when to try again (a 503's
	// Retry-After header).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// FieldError is one problem of a validation failure, shaped like the
// pydantic errors the original service returned: {type, loc, msg, input, url}.
type FieldError struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input"`
	// Ctx holds the rule's parameters (max_length, ge, le) as pydantic
	// gives them, so a form can phrase the message its own way.
	Ctx map[string]any `json:"ctx,omitempty"`
	URL string         `json:"url,omitempty"`
}

// Errorf builds a domain error.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ValidationError is the 422 for a list of field problems.
func ValidationError(fields []FieldError) error {
	msg := "Validation failed"
	if len(fields) > 0 {
		msg = fmt.Sprintf("%v: %s", fields[0].Loc, fields[0].Msg)
	}
	return &Error{Code: Invalid, Message: msg, Fields: fields}
}

// AsError returns err's domain error, nil when it has none.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// ErrorCode returns the domain code of err, Internal when it has none.
func ErrorCode(err error) Code {
	if e := AsError(err); e != nil {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	if e := AsError(err); e != nil {
		return e.Message
	}
	return "Internal server error"
}

// QuotaError is the 429 for a user at their concurrent-session limit.
func QuotaError(limit, active int) error {
	return &Error{
		Code: RateLimited,
		Message: fmt.Sprintf("Concurrent session limit reached (%d/%d). Terminate an active session before starting a new one.",
			active, limit),
		Extra: map[string]any{"limit": limit, "active": active},
	}
}
