package policy_test

import (
	"os"
	"testing"

	"github.com/locksmithhq/locksmith/sql/sqltest"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }
