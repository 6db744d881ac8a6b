package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// cmdAudit implements `locksmith audit verify [--tenant SLUG] [--json]` and
// `locksmith audit seal`.
//
// verify recomputes every tenant's (or one tenant's) audit hash chain and
// prints one line per tenant, plus one line per finding naming the event:
//
//	acme: event 17 edited: its contents differ from the sealed digest
//
// It exits 1 if anything was edited, deleted or inserted. seal seals what
// the periodic job has not sealed yet (before a verify, say).
func cmdAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "seal") {
		return &usageError{"expected `audit verify [--tenant SLUG] [--json]` or `audit seal`"}
	}
	sub := args[0]
	fs := newFlagSet("audit "+sub, stderr)
	slug := fs.String("tenant", "", "only this tenant (slug); default all tenants")
	asJSON := false
	if sub == "verify" {
		fs.BoolVar(&asJSON, "json", false, "print the reports as JSON")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := LoadConfig(getenv, need{database: true})
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg)
	dbURL, assume := cfg.DatabaseURL, true
	if cfg.AppDatabaseURL != "" {
		dbURL, assume = cfg.AppDatabaseURL, false
	}
	ctx, cancel := context.WithTimeout(ctx, 6*time.Hour)
	defer cancel()
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: assume})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := lsql.CheckSchema(ctx, db.Pool()); err != nil {
		return err
	}
	store, err := audit.New(audit.Config{DB: db, Logger: logger})
	if err != nil {
		return err
	}
	var slugs []string
	if *slug != "" {
		slugs = []string{*slug}
	}

	if sub == "seal" {
		ts, err := store.Tenants(ctx, slugs...)
		if err != nil {
			return publicErr(err)
		}
		var errs []error
		for _, t := range ts {
			var total int64
			for {
				res, err := store.Seal(ctx, t.ID)
				total += res.Events
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", t.Slug, err))
					break
				}
				if res.Events == 0 {
					fmt.Fprintf(stdout, "%s: sealed %d events (up to event %d, head %x)\n", t.Slug, total, res.ToSeq, res.Hash)
					break
				}
			}
		}
		return errors.Join(errs...)
	}

	reports, err := store.VerifyAll(ctx, slugs...)
	if err != nil {
		return publicErr(err)
	}
	bad, problems := 0, int64(0)
	for _, r := range reports {
		if !r.OK() {
			bad++
			problems += int64(len(r.Problems)) + r.MoreProblems
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		for _, r := range reports {
			if r.OK() {
				fmt.Fprintf(stdout, "%s: ok — %d events, %d sealed in %d seals, head %x (%s)\n",
					r.Tenant.Slug, r.Events, r.Sealed, r.Seals, r.Head, r.Duration.Round(time.Millisecond))
				continue
			}
			for _, p := range r.Problems {
				fmt.Fprintf(stdout, "%s: %s\n", r.Tenant.Slug, p)
			}
			if r.MoreProblems > 0 {
				fmt.Fprintf(stdout, "%s: … and %d more problems\n", r.Tenant.Slug, r.MoreProblems)
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("the audit trail of %d tenant(s) failed verification: %d problem(s)", bad, problems)
	}
	return nil
}
