// Package orm holds the examples and real-ring tests of dbrouter's
// *sql.DB that fails over (Router.OpenDB) under the libraries Go
// programs use instead of database/sql itself: gorm, sqlc-style
// generated code (package sqlcdb), sqlx and bun. It is a module of its
// own so that the library's dependencies stay the standard library, the
// MySQL driver and YAML; the package itself exports nothing.
//
// Each library is given the *sql.DB of Router.OpenDB (or the "dbrouter"
// driver's, from a DSN) as it would be given a plain one:
//
//	gorm: gorm.Open(mysql.New(mysql.Config{Conn: db}), &gorm.Config{})
//	sqlc: sqlcdb.New(db)
//	sqlx: sqlx.NewDb(db, "mysql")
//	bun:  bun.NewDB(db, mysqldialect.New())
//
// The tests kill (SIGKILL) and freeze (SIGSTOP) the writer of a real
// MariaDB ring under concurrent writes through all four, and count the
// acknowledged writes lost and doubled (both must be 0) and the errors
// matching dbrouter.ErrOutcomeUnknown through each library's own error
// wrapping; see docs/sqldb.md.
package orm
