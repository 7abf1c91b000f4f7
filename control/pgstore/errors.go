package pgstore

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// ErrInvalidConfig: Config failed validation.
	ErrInvalidConfig = errors.New("pgstore: invalid config")
	// ErrNotFound: the row (or a row it refers to) does not exist in the
	// tenant.
	ErrNotFound = errors.New("pgstore: not found")
	// ErrExists: a row with the same key (or the same unique value, such
	// as a clinician's email in the tenant) exists already.
	ErrExists = errors.New("pgstore: already exists")
	// ErrInvalid: a value breaks a constraint of the schema (an empty or
	// too long id, a bad email, an unknown state, min above max, …).
	ErrInvalid = errors.New("pgstore: invalid value")
	// ErrConflict: a device config compare-and-set found another version
	// than its base.
	ErrConflict = errors.New("pgstore: config version conflict")
	// ErrNotInCare: the clinician does not have the patient in care.
	ErrNotInCare = errors.New("pgstore: patient not in the clinician's care")
	// ErrDeviceNotAssigned: the device does not belong to the patient.
	ErrDeviceNotAssigned = errors.New("pgstore: device not assigned to the patient")
	// ErrMigration: the embedded migrations are malformed, or one already
	// applied differs from the embedded file of the same version.
	ErrMigration = errors.New("pgstore: migration")
)

// PostgreSQL error codes mapped to sentinels.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	codeStringTooLong       = "22001"
	codeDeadlockDetected    = "40P01"
)

// wrap maps err to the package's sentinels and names the operation. It
// keeps the constraint name of a violation but never the row's values.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pgstore: %s: %w", op, ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return fmt.Errorf("pgstore: %s: %w (%s)", op, ErrExists, pe.ConstraintName)
		case codeForeignKeyViolation:
			return fmt.Errorf("pgstore: %s: %w: referenced row missing (%s)", op, ErrNotFound, pe.ConstraintName)
		case codeCheckViolation, codeNotNullViolation, codeStringTooLong:
			return fmt.Errorf("pgstore: %s: %w (%s%s)", op, ErrInvalid, pe.ConstraintName, pe.ColumnName)
		}
		// Other server errors: code and message, never Detail (it may
		// quote row values).
		return fmt.Errorf("pgstore: %s: %s (SQLSTATE %s)", op, pe.Message, pe.Code)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}
