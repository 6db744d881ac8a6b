package jobs_test

import (
	"os"
	"testing"

	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// TestMain gives the jobs tests their own database. Other test files of
// this package share it.
func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }
