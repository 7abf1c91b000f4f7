package controlserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// apiError is an error answer: {"code": "...", "message": "..."}. Message
// is for people and never carries PHI, secrets or e-mail addresses.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "bad_request", format, args...)
}

func unauthorized(format string, args ...any) *apiError {
	return errorf(http.StatusUnauthorized, "unauthorized", format, args...)
}

func forbidden(code, format string, args ...any) *apiError {
	return errorf(http.StatusForbidden, code, format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, "not_found", format, args...)
}

// unavailable answers a failure of the database (or another dependency):
// the request may succeed when retried. The cause is logged, not sent.
var unavailable = &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable",
	Message: "the control plane cannot reach its database right now; retry later"}

// storeError maps a pgstore error to an answer: not found, exists and
// invalid values are the caller's; anything else is logged and answered
// 503 without details.
func (s *Server) storeError(r *http.Request, what string, err error) *apiError {
	switch {
	case errors.Is(err, pgstore.ErrNotFound):
		return notFound("%s not found", what)
	case errors.Is(err, pgstore.ErrExists):
		return errorf(http.StatusConflict, "exists", "%s already exists", what)
	case errors.Is(err, pgstore.ErrInvalid):
		return errorf(http.StatusUnprocessableEntity, "invalid", "%s: a value is out of range or malformed (ids are 1 to 128 bytes)", what)
	}
	s.log.ErrorContext(r.Context(), "store failed", "route", r.Pattern, "err", err)
	return unavailable
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers err: an *apiError as itself, anything else as 500.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal", "internal error")
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stapes"`)
	}
	writeJSON(w, ae.Status, ae)
}

// decodeJSON reads one JSON object of at most limit bytes into v,
// refusing unknown fields and trailing data. Its errors are *apiError and
// never quote the body.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error, limit int64) *apiError {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		big *http.MaxBytesError
	)
	switch {
	case errors.As(err, &big):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d bytes", limit)
	case errors.As(err, &syn):
		return badRequest("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return badRequest("field %q has the wrong type (want %s)", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return badRequest("the body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the JSON body is truncated")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("the body is not a valid JSON object")
}

// required reports the first empty field among name/value pairs as a 400.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return badRequest("%s is required", pairs[i])
		}
	}
	return nil
}
