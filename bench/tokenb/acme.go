package tokenb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

// Acme is the Acme Tasks the harness refreshes against, in this process
// (LocalAcme) or in a child process (RemoteAcme).
type Acme interface {
	// URL is the base URL; the token endpoint is URL()+"/token".
	URL() string
	// Issue starts one token family per user, for the default client and
	// every scope, as a consent would (tasks.Server.IssueTokens).
	Issue(ctx context.Context, users []string) ([]tasks.TokenResponse, error)
	// Stats returns the server's counters.
	Stats(ctx context.Context) (tasks.Stats, error)
}

// AcmeConfig returns the Acme Tasks configuration for n benchmark users
// (Users(0, n)): room for eight tokens per user (two families, each
// refreshed once) and access tokens living accessLifetime (0 means one
// hour).
func AcmeConfig(n int, accessLifetime time.Duration) tasks.Config {
	cfg := tasks.Config{AccessTokenLifetime: accessLifetime, MaxTokens: 8*n + 1000}
	for _, name := range Users(0, n) {
		cfg.Users = append(cfg.Users, tasks.User{Name: name, Email: name + "@acme.example"})
	}
	return cfg
}

// LocalAcme is Acme Tasks listening on a loopback port of this process.
type LocalAcme struct {
	Server *tasks.Server
}

// StartLocalAcme starts Acme Tasks with cfg on 127.0.0.1, port 0.
func StartLocalAcme(cfg tasks.Config) (*LocalAcme, error) {
	s, err := tasks.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenb: acme: %w", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("tokenb: acme: %w", err)
	}
	return &LocalAcme{Server: s}, nil
}

// URL returns the server's base URL.
func (a *LocalAcme) URL() string { return a.Server.URL() }

// Issue calls IssueTokens for each user.
func (a *LocalAcme) Issue(_ context.Context, users []string) ([]tasks.TokenResponse, error) {
	return issueAll(a.Server, users)
}

// Stats returns the server's counters.
func (a *LocalAcme) Stats(context.Context) (tasks.Stats, error) { return a.Server.Stats(), nil }

// Close stops the server.
func (a *LocalAcme) Close(ctx context.Context) error { return a.Server.Close(ctx) }

func issueAll(s *tasks.Server, users []string) ([]tasks.TokenResponse, error) {
	out := make([]tasks.TokenResponse, len(users))
	for i, u := range users {
		var err error
		if out[i], err = s.IssueTokens(u, tasks.DefaultClientID, tasks.SupportedScopes()); err != nil {
			return nil, fmt.Errorf("tokenb: acme: %w", err)
		}
	}
	return out, nil
}

// acmeStats is what the child's stats endpoint answers: the counters and
// the child's own memory.
type acmeStats struct {
	Stats tasks.Stats `json:"stats"`
	Mem   Mem         `json:"mem"`
}

// ServeAcme serves Acme Tasks with cfg on addr until ctx ends, with a
// control API for the parent under /_bench/ (POST /_bench/issue with a JSON
// list of users, GET /_bench/stats). ready is called with the base URL once
// it listens. It is the child side of StartAcmeProcess.
func ServeAcme(ctx context.Context, cfg tasks.Config, addr string, ready func(url string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tokenb: acme: %w", err)
	}
	base := "http://" + ln.Addr().String()
	cfg.Issuer = base
	s, err := tasks.New(cfg)
	if err != nil {
		ln.Close()
		return fmt.Errorf("tokenb: acme: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", s.Handler())
	mux.HandleFunc("POST /_bench/issue", func(w http.ResponseWriter, r *http.Request) {
		var users []string
		if err := json.NewDecoder(r.Body).Decode(&users); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		toks, err := issueAll(s, users)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(toks)
	})
	mux.HandleFunc("GET /_bench/stats", func(w http.ResponseWriter, r *http.Request) {
		st := s.Stats()
		st.Revocations = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(acmeStats{Stats: st, Mem: ReadMem()})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	ready(base)
	select {
	case err := <-done:
		return fmt.Errorf("tokenb: acme: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.Close(sctx)
	return srv.Shutdown(sctx)
}

// RemoteAcme is Acme Tasks in a child process (see ServeAcme), so that its
// token store and its CPU profile are not Locksmith's.
type RemoteAcme struct {
	url    string
	cmd    *exec.Cmd
	client *http.Client
}

// StartAcmeProcess runs exe with args, a program that calls ServeAcme and
// prints the base URL as the first line of its standard output, and
// returns once that line arrived. The child's standard error is ours.
func StartAcmeProcess(ctx context.Context, exe string, args ...string) (*RemoteAcme, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("tokenb: acme process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tokenb: acme process: %w", err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	a := &RemoteAcme{cmd: cmd, client: &http.Client{Timeout: 2 * time.Minute}}
	select {
	case u, ok := <-lines:
		if !ok || !strings.HasPrefix(u, "http://") {
			a.Close()
			return nil, errors.New("tokenb: acme process: no URL on its standard output")
		}
		a.url = u
		return a, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	a.Close()
	return nil, errors.New("tokenb: acme process: did not start in time")
}

// URL returns the child's base URL.
func (a *RemoteAcme) URL() string { return a.url }

// Issue asks the child to issue token families.
func (a *RemoteAcme) Issue(ctx context.Context, users []string) ([]tasks.TokenResponse, error) {
	body, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	var toks []tasks.TokenResponse
	if err := a.call(ctx, http.MethodPost, "/_bench/issue", body, &toks); err != nil {
		return nil, err
	}
	if len(toks) != len(users) {
		return nil, fmt.Errorf("tokenb: acme issue: %d tokens for %d users", len(toks), len(users))
	}
	return toks, nil
}

// Stats returns the child's counters.
func (a *RemoteAcme) Stats(ctx context.Context) (tasks.Stats, error) {
	var st acmeStats
	err := a.call(ctx, http.MethodGet, "/_bench/stats", nil, &st)
	return st.Stats, err
}

// Mem returns the child's memory.
func (a *RemoteAcme) Mem(ctx context.Context) (Mem, error) {
	var st acmeStats
	err := a.call(ctx, http.MethodGet, "/_bench/stats", nil, &st)
	return st.Mem, err
}

func (a *RemoteAcme) call(ctx context.Context, method, path string, body []byte, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("tokenb: acme %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("tokenb: acme %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("tokenb: acme %s: %w", path, err)
	}
	return nil
}

// Close stops the child (SIGTERM, then SIGKILL after 5 seconds) and waits.
func (a *RemoteAcme) Close() {
	if a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
}
