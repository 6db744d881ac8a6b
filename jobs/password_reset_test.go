package jobs_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/inbox"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/mail"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// TestPasswordResetJobRetries: with the mail server down, the job fails,
// River schedules a retry after the worker's backoff, and nothing secret
// is in the job row (its arguments are the account id, and its recorded
// error holds no token). With the server back, the retry mints a new
// token, the token of the failed attempt stops working, and the emailed
// link works.
func TestPasswordResetJobRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A database of its own: the package's other tests run working River
	// clients on the shared one, which would fetch this test's job.
	ownerURL := sqltest.NewDatabase(t)
	db, err := lsql.Open(ctx, lsql.Options{URL: ownerURL, AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	logger := slog.New(slog.DiscardHandler)
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{})
	require.NoError(t, err)
	inserter, err := jobs.NewInserter(db, logger)
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger,
		BaseURL: "https://locksmith.example.test", PasswordResets: inserter})
	require.NoError(t, err)
	email := "reset-" + uuid.NewString()[:8] + "@example.com"
	acct, err := svc.SignUp(ctx, email, "the old passphrase")
	require.NoError(t, err)

	// The mail server's address, with nothing listening yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	server, err := mail.ParseURL("smtp+insecure://" + addr)
	require.NoError(t, err)
	mailer, err := mail.New(mail.Config{Server: server, From: "no-reply@locksmith.example.test"})
	require.NoError(t, err)

	require.NoError(t, svc.RequestPasswordReset(ctx, email))
	job := resetJob(t, db, acct.ID)
	require.JSONEq(t, `{"account_id": "`+acct.ID.String()+`"}`, string(job.EncodedArgs), "the account id, nothing else")
	require.Equal(t, tenants.PasswordResetMaxAttempts, job.MaxAttempts)

	// Attempt 1: connection refused.
	worker := jobs.NewPasswordResetWorker(svc, mailer, logger)
	tw := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{Logger: logger}, worker)
	res, err := workInTx(t, db, tw, job)
	require.ErrorContains(t, err, "connect")
	require.Equal(t, river.EventKindJobFailed, res.EventKind)
	job = resetJob(t, db, acct.ID)
	require.Equal(t, rivertype.JobStateRetryable, job.State)
	require.Len(t, job.Errors, 1)
	require.Contains(t, job.Errors[0].Error, "connect")
	require.WithinDuration(t, time.Now().Add(jobs.PasswordResetBackoff(1)), job.ScheduledAt, 5*time.Second, "retried after the backoff")
	firstHash := unusedResetHash(t, db, acct.ID)
	require.NotNil(t, firstHash, "attempt 1 minted and stored a token before it tried to send")

	// The mail server comes up on that address; attempt 2 delivers.
	in, err := inbox.New(inbox.Config{})
	require.NoError(t, err)
	require.NoError(t, in.Start(addr))
	t.Cleanup(func() { _ = in.Close() })
	res, err = workInTx(t, db, tw, job)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	mails := in.Mails()
	require.Len(t, mails, 1)
	require.Equal(t, []string{email}, mails[0].To)
	link := regexp.MustCompile(`https://\S+`).FindString(mails[0].Text)
	u, err := url.Parse(link)
	require.NoError(t, err)
	tok := u.Query().Get("token")
	require.NotEmpty(t, tok)

	sum := sha256.Sum256([]byte(tok))
	require.NotEqual(t, firstHash, sum[:], "the retry minted a new token")
	require.Equal(t, sum[:], unusedResetHash(t, db, acct.ID), "and only it works: attempt 1's token is gone")

	// Nothing in River's row (args, recorded errors, metadata) holds the token.
	var row string
	require.NoError(t, db.Pool().QueryRow(ctx, "SELECT row_to_json(j)::text FROM river_job j WHERE id = $1", job.ID).Scan(&row))
	require.NotContains(t, row, tok)
	require.NotContains(t, row, "token=")

	_, err = svc.SetPasswordWithToken(ctx, tok, "a brand new passphrase")
	require.NoError(t, err)
	_, err = svc.SignIn(ctx, email, "a brand new passphrase")
	require.NoError(t, err)

	// An account deleted before its job ran: the job is cancelled, not retried.
	gone, err := svc.SignUp(ctx, "gone-"+uuid.NewString()[:8]+"@example.com", "the old passphrase")
	require.NoError(t, err)
	require.NoError(t, svc.RequestPasswordReset(ctx, gone.Email))
	require.NoError(t, deleteAccount(t, ownerURL, gone.ID))
	res, _ = workInTx(t, db, tw, resetJob(t, db, gone.ID))
	require.Equal(t, river.EventKindJobCancelled, res.EventKind)
}

func TestPasswordResetBackoff(t *testing.T) {
	t.Parallel()
	var total time.Duration
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute}
	for i := 1; i < tenants.PasswordResetMaxAttempts; i++ {
		d := jobs.PasswordResetBackoff(i)
		if i <= len(want) {
			require.Equal(t, want[i-1], d, "attempt %d", i)
		} else {
			require.Equal(t, 5*time.Minute, d, "attempt %d", i)
		}
		total += d
	}
	require.InDelta(t, 30*time.Minute, total, float64(5*time.Minute), "the last attempt is about half an hour after the request")
}

// resetJob returns the account's one password-reset job.
func resetJob(t *testing.T, db *lsql.DB, accountID uuid.UUID) *rivertype.JobRow {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(), "SELECT id FROM river_job WHERE kind = $1 AND args->>'account_id' = $2",
		tenants.PasswordResetArgs{}.Kind(), accountID.String())
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Len(t, ids, 1)
	client, err := jobs.NewInserter(db, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	job, err := client.JobGet(context.Background(), ids[0])
	require.NoError(t, err)
	return job
}

// workInTx works job as River would, commits what River recorded, and
// returns the outcome and the worker's error.
func workInTx(t *testing.T, db *lsql.DB, tw *rivertest.Worker[tenants.PasswordResetArgs, pgx.Tx], job *rivertype.JobRow) (*rivertest.WorkResult, error) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	res, workErr := tw.WorkJob(ctx, t, tx, job)
	require.NoError(t, tx.Commit(ctx))
	return res, workErr
}

// unusedResetHash is the hash of the account's one unused reset token (nil
// if none; the test fails if there are more).
func unusedResetHash(t *testing.T, db *lsql.DB, accountID uuid.UUID) []byte {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(),
		"SELECT token_hash FROM account_tokens WHERE account_id = $1 AND purpose = 'reset_password' AND used_at IS NULL", accountID)
	require.NoError(t, err)
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	require.NoError(t, err)
	require.LessOrEqual(t, len(hashes), 1)
	if len(hashes) == 0 {
		return nil
	}
	return hashes[0]
}

// deleteAccount deletes an account as the database owner (the app role may
// not delete accounts).
func deleteAccount(t *testing.T, ownerURL string, accountID uuid.UUID) error {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DELETE FROM accounts WHERE id = $1", accountID)
	return err
}
