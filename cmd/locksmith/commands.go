package main

import (
	"context"
	"fmt"
	"io"
	"time"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := LoadConfig(getenv, need{database: true})
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	applied, err := lsql.Migrate(ctx, cfg.DatabaseURL, logger)
	if err != nil {
		return err
	}
	logger.Info("database is up to date", "applied", len(applied), "version", lsql.LatestVersion())
	return nil
}

func cmdKeys(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return &usageError{"expected `keys generate [--id ID]`"}
	}
	fs := newFlagSet("keys generate", stdout)
	id := fs.String("id", time.Now().UTC().Format("2006-01-02"), "key id")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	k, err := seal.GenerateMasterKey(*id)
	if err != nil {
		return &usageError{err.Error()}
	}
	fmt.Fprintln(stdout, k)
	return nil
}
