package tokenb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// CreateDatabase creates an empty database on the server at serverURL (a
// DATABASE_URL whose role may create databases), migrates it with
// lsql.Migrate, and returns its owner URL and a function that drops it.
func CreateDatabase(ctx context.Context, serverURL string, logger *slog.Logger) (ownerURL string, drop func(context.Context) error, err error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "locksmith_tokenb_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("tokenb: connect to the server: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("tokenb: create database: %w", err)
	}
	drop = func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return fmt.Errorf("tokenb: drop database: %w", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("tokenb: drop database: %w", err)
		}
		return nil
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		_ = drop(ctx)
		return "", nil, fmt.Errorf("tokenb: parse the server URL: %w", err)
	}
	u.Path = "/" + name
	ownerURL = u.String()
	if _, err := lsql.Migrate(ctx, ownerURL, logger); err != nil {
		_ = drop(ctx)
		return "", nil, fmt.Errorf("tokenb: migrate: %w", err)
	}
	return ownerURL, drop, nil
}
