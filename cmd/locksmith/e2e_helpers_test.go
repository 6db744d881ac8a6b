package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// stack is the whole application on port 0 with the demo IdP and Acme
// Tasks, for end-to-end tests.
type stack struct {
	Main  *Main
	URL   string
	IdP   *idp.IdP
	Tasks *tasks.Server
}

// stackOption adjusts Main after Open and before Run.
type stackOption func(t *testing.T, m *Main)

// startStack runs Main (HTTP and workers) against the package database.
func startStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	return startStackWith(t, nil, opts...)
}

// startStackWith is startStack with configure adjusting Main's Config
// before Open (another database, a mail server).
func startStackWith(t *testing.T, configure func(*Config), opts ...stackOption) *stack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	baseURL, err := url.Parse(base)
	require.NoError(t, err)
	key, err := testMasterKey()
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("LOCKSMITH_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	demoIdP := idp.NewTestServer(t)
	acme, err := tasks.New(tasks.Config{Logger: logger})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })

	m := &Main{
		Config: Config{
			DatabaseURL: sqltest.OwnerURL(t), Addr: ln.Addr().String(), BaseURL: baseURL,
			MasterKeys: mk, AllowPrivate: true,
		},
		Logger: logger, Serve: true, Work: true, listener: ln,
	}
	if configure != nil {
		configure(&m.Config)
	}
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, m.Open(ctx))
	for _, o := range opts {
		o(t, m)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &stack{Main: m, URL: base, IdP: demoIdP, Tasks: acme}
}

// chromiumPath finds the browser: LOCKSMITH_CHROMIUM (set by make test),
// else chromium on PATH. Browser tests fail (not skip) without it, so CI
// can't pass by not running them.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("LOCKSMITH_CHROMIUM"); p != "" {
		return p
	}
	for _, c := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is needed for browser tests: run `make test` (it installs it) or apt-get install chromium")
	return ""
}

// browser starts a headless Chromium and returns a context for chromedp.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return ctx
}

// screenshot writes a full-page PNG to screenshots/<test>/<n>-<name>.png at
// the repository root (git-ignored).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	dir := filepath.Join("..", "..", "screenshots", strings.ReplaceAll(t.Name(), "/", "_"))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	n, _ := os.ReadDir(dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, strings.Join([]string{twoDigits(len(n) + 1), name}, "-")+".png"), png, 0o644))
}

func twoDigits(n int) string {
	s := "0" + itoa(n)
	return s[len(s)-2:]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// tid selects by data-testid.
func tid(id string) chromedp.CSS { return chromedp.CSS(`[data-testid="` + id + `"]`) }

// text returns the text of the element with that data-testid.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(tid(id)))
	require.NoError(t, err, "text of %s", id)
	return s
}

// value returns the value of the input with that data-testid.
func value(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Value(tid(id)))
	require.NoError(t, err, "value of %s", id)
	return s
}

var (
	masterKeyOnce sync.Once
	masterKey     string
	masterKeyErr  error
)

// testMasterKey is the one LOCKSMITH_MASTER_KEY of this package's tests. All
// of them share the package database, and every running Main's workers pick
// up jobs for any tenant in it: with different master keys they could not
// open each other's tenants' data keys.
func testMasterKey() (string, error) {
	masterKeyOnce.Do(func() { masterKey, masterKeyErr = seal.GenerateMasterKey("test") })
	return masterKey, masterKeyErr
}
