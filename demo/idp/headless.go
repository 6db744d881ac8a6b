package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// HeadlessLogin describes an authorization code + PKCE flow driven over
// HTTP without a browser, as a demo user who "clicks" their button on the
// login page. It is what `locksmith dev token` and end-to-end tests use to get
// a real Token A from a running demo IdP.
type HeadlessLogin struct {
	// Issuer is the demo IdP's URL.
	Issuer string
	// Username is a demo user's name (engineer, approver, …).
	Username string
	// ClientID defaults to ClientMCPAgent (a public client).
	ClientID string
	// ClientSecret for confidential clients.
	ClientSecret string
	// Resource is the RFC 8707 resource (the MCP URL); it becomes the aud.
	Resource string
	// Scopes requested; "openid" is added.
	Scopes []string
	// HTTPClient to use; nil means a default client.
	HTTPClient *http.Client
}

// Run performs the flow and returns the token response (access token,
// refresh token, ID token in Extra("id_token")).
func (h HeadlessLogin) Run(ctx context.Context) (*oauth2.Token, error) {
	if h.Issuer == "" || h.Username == "" {
		return nil, errors.New("idp: headless login needs an issuer and a username")
	}
	if h.ClientID == "" {
		h.ClientID = ClientMCPAgent
	}
	base := http.DefaultClient
	if h.HTTPClient != nil {
		base = h.HTTPClient
	}
	jar, _ := cookiejar.New(nil)
	const redirect = "http://127.0.0.1:1/callback"
	client := &http.Client{
		Transport: base.Transport,
		Jar:       jar,
		Timeout:   base.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), redirect) || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	cfg := oauth2.Config{
		ClientID:     h.ClientID,
		ClientSecret: h.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   strings.TrimRight(h.Issuer, "/") + "/authorize",
			TokenURL:  strings.TrimRight(h.Issuer, "/") + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirect,
		Scopes:      append([]string{"openid"}, h.Scopes...),
	}
	if h.ClientSecret != "" {
		cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	verifier := oauth2.GenerateVerifier()
	state := randomState()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if h.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", h.Resource))
	}
	resp, err := client.Get(cfg.AuthCodeURL(state, opts...))
	if err != nil {
		return nil, fmt.Errorf("idp: headless login: authorize: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loginURL := resp.Request.URL
	authRequestID := loginURL.Query().Get("authRequestID")
	if authRequestID == "" {
		return nil, fmt.Errorf("idp: headless login: expected the login page, got %s (HTTP %d)", loginURL.Redacted(), resp.StatusCode)
	}
	form := url.Values{"authRequestID": {authRequestID}, "username": {h.Username}}
	loginPost := loginURL.ResolveReference(&url.URL{Path: "/login"})
	resp, err = client.PostForm(loginPost.String(), form)
	if err != nil {
		return nil, fmt.Errorf("idp: headless login: login: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("idp: headless login: login as %q: HTTP %d: %s", h.Username, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("idp: headless login: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state || q.Get("code") == "" {
		return nil, errors.New("idp: headless login: the redirect carried no code or a wrong state")
	}
	exOpts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if h.Resource != "" {
		exOpts = append(exOpts, oauth2.SetAuthURLParam("resource", h.Resource))
	}
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, base), q.Get("code"), exOpts...)
	if err != nil {
		return nil, fmt.Errorf("idp: headless login: exchange code: %w", err)
	}
	return tok, nil
}

func randomState() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	s := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(s[:16])
}
