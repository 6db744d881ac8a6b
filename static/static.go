// Package static holds the console's CSS, its few lines of JavaScript and
// its images, embedded in the binary. Every asset is served under a
// content-hashed name (/static/app.3f9c2a1b7d.css) with a one-year immutable
// cache, so a deploy never serves stale CSS and a browser never re-asks for an
// unchanged file. Nothing is loaded from a CDN: the strict CSP
// (style-src 'self', script-src 'self' + nonce) holds.
package static

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed app.css app.js favicon.svg
var files embed.FS

// Prefix is the URL path under which Handler serves assets.
const Prefix = "/static/"

type asset struct {
	hashed string
	ctype  string
	etag   string
	body   []byte
}

type manifest struct {
	byName   map[string]*asset // logical name → asset
	byHashed map[string]*asset // hashed name → asset
}

// load reads and hashes the embedded files once.
var load = sync.OnceValue(func() *manifest {
	m := &manifest{byName: map[string]*asset{}, byHashed: map[string]*asset{}}
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic("static: read embedded files: " + err.Error())
	}
	for _, e := range entries {
		body, err := files.ReadFile(e.Name())
		if err != nil {
			panic("static: read " + e.Name() + ": " + err.Error())
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])[:12]
		ext := path.Ext(e.Name())
		a := &asset{
			hashed: strings.TrimSuffix(e.Name(), ext) + "." + h + ext,
			ctype:  mime.TypeByExtension(ext),
			etag:   `"` + h + `"`,
			body:   body,
		}
		if a.ctype == "" {
			a.ctype = "application/octet-stream"
		}
		m.byName[e.Name()] = a
		m.byHashed[a.hashed] = a
	}
	return m
})

// URL returns the content-hashed URL path of the named asset, e.g.
// URL("app.css") = "/static/app.3f9c2a1b7d0e.css". Asset names are constants
// in templates, so it panics on an unknown name: a typo fails the first test
// that renders the page.
func URL(name string) string {
	a, ok := load().byName[name]
	if !ok {
		panic("static: no asset named " + name)
	}
	return Prefix + a.hashed
}

// Handler serves assets under Prefix by their hashed names only, with
// Cache-Control "public, max-age=31536000, immutable". Unknown or unhashed
// names get 404.
func Handler() http.Handler {
	m := load()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		a := m.byHashed[name]
		if !ok || a == nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
