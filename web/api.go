package web

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// The admin API: the console's capabilities as JSON under /api/v1/,
// authenticated by tenant API keys (Authorization: Bearer lsk_…). The key
// names the tenant, so no URL carries a tenant and another tenant's object
// id is simply not found. Viewer keys may only read. Handlers decode the
// request strictly, call the same tenants.Service methods as the console and
// encode the result; errors are RFC 9457 problem details (writeError).

// apiChallenge is the WWW-Authenticate challenge of every 401 from the API.
const apiChallenge = `Bearer realm="locksmith-api"`

// Page sizes of list endpoints.
const (
	apiDefaultLimit = 50
	apiMaxLimit     = 200
)

// apiHandler is an API handler: p is the authenticated key's tenant and role.
type apiHandler func(w http.ResponseWriter, r *http.Request, p tenants.APIPrincipal) error

// apiRoute is one route of the admin API. The route table registers the
// handlers and generates the OpenAPI document, so the two can't drift.
type apiRoute struct {
	method, path string
	h            apiHandler
	op           apiOperation
}

// apiRoutes registers the admin API. Routes are bearer-authenticated and
// outside the browser group (no session, no cross-origin check: a browser
// can't attach the Authorization header cross-site without CORS, which the
// API doesn't grant).
func (s *Server) apiRoutes() {
	routes := s.apiRouteTable()
	doc, err := json.MarshalIndent(apiOpenAPIDocument(s.cfg.BaseURL.String(), routes), "", "  ")
	if err != nil {
		panic(fmt.Sprintf("web: build the OpenAPI document: %v", err)) // a programming error, caught by tests
	}
	s.Handle("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, err := w.Write(doc)
		return err
	})
	for _, rt := range routes {
		s.Handle(rt.method+" "+rt.path, s.api(rt.h))
	}
	// Anything else under /api/: a problem, 405 with Allow when the path
	// exists under other methods.
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		s.Handle(m+" /api/", s.apiNoRoute)
	}
}

// apiRouteTable is the admin API.
func (s *Server) apiRouteTable() []apiRoute {
	page := []apiParam{
		{name: "limit", typ: "integer", doc: fmt.Sprintf("Page size, 1 to %d (default %d).", apiMaxLimit, apiDefaultLimit)},
		{name: "cursor", typ: "string", doc: "The next_cursor of the previous page; omit for the first page."},
	}
	return []apiRoute{
		{"GET", "/api/v1/presets", s.apiPresets, apiOperation{id: "listPresets", tag: "Presets", summary: "List IdP and upstream presets",
			doc:  "The claim-mapping presets of identity providers and the endpoints and quirks of common upstream providers.",
			resp: apiPresets{}}},

		{"GET", "/api/v1/idps", s.apiListIdPs, apiOperation{id: "listIdPs", tag: "IdP", summary: "List the IdP registration",
			doc: "A tenant has at most one IdP registration: the list has 0 or 1 items.", resp: apiIdPList{}}},
		{"POST", "/api/v1/idps", s.apiCreateIdP, apiOperation{id: "createIdP", tag: "IdP", summary: "Register the IdP",
			doc: "Registers the tenant's IdP after a live discovery and JWKS check. A registration whose check found " +
				"problems is stored with check_ok false and the problems in check_message; an issuer on a forbidden " +
				"address (loopback, private, link-local, cloud metadata, unless private targets are allowed) or that " +
				"doesn't resolve is refused. 409 if the tenant already has one (PATCH it instead). issuer is required.",
			body: apiIdPInput{}, status: http.StatusCreated, resp: apiIdP{}}},
		{"POST", "/api/v1/idps/check", s.apiCheckIdP, apiOperation{id: "checkIssuer", tag: "IdP", summary: "Check an issuer live",
			doc:  "Fetches the issuer's discovery document and JWKS and reports what it found. Nothing is stored.",
			body: apiIssuer{}, resp: apiIdPCheck{}}},
		{"GET", "/api/v1/idps/{id}", s.apiGetIdP, apiOperation{id: "getIdP", tag: "IdP", summary: "Get the IdP registration", resp: apiIdP{}}},
		{"PATCH", "/api/v1/idps/{id}", s.apiPatchIdP, apiOperation{id: "updateIdP", tag: "IdP", summary: "Change the IdP registration",
			doc: "Absent fields keep their values. The issuer is checked live again.", body: apiIdPInput{}, resp: apiIdP{}}},
		{"DELETE", "/api/v1/idps/{id}", s.apiDeleteIdP, apiOperation{id: "deleteIdP", tag: "IdP", summary: "Remove the IdP registration",
			doc: "Token A can no longer be validated for the tenant afterwards.", status: http.StatusNoContent}},
		{"POST", "/api/v1/idps/{id}/recheck", s.apiRecheckIdP, apiOperation{id: "recheckIdP", tag: "IdP", summary: "Check the registered issuer again",
			doc: "Runs the live check against the registered issuer and stores its outcome.", resp: apiIdPCheck{}}},

		{"GET", "/api/v1/upstreams", s.apiListUpstreams, apiOperation{id: "listUpstreams", tag: "Upstreams", summary: "List upstreams",
			doc: "By slug, a page at a time.", query: page, resp: apiUpstreamPage{}}},
		{"POST", "/api/v1/upstreams", s.apiCreateUpstream, apiOperation{id: "createUpstream", tag: "Upstreams", summary: "Register an upstream",
			doc: "With a preset, absent fields take the preset's values. Every URL is checked by the egress guard; an oauth2 " +
				"upstream needs authorization and token endpoints (given, or discovered from issuer) and a client_id. " +
				"slug and name are required.",
			body: apiUpstreamInput{}, status: http.StatusCreated, resp: apiUpstream{}}},
		{"POST", "/api/v1/upstreams/discover", s.apiDiscoverUpstream, apiOperation{id: "discoverUpstream", tag: "Upstreams",
			summary: "Discover an authorization server",
			doc:     "Reads RFC 8414 metadata (then OpenID Connect discovery) of an upstream's issuer. Nothing is stored.",
			body:    apiIssuer{}, resp: apiUpstreamDiscovery{}}},
		{"GET", "/api/v1/upstreams/{id}", s.apiGetUpstream, apiOperation{id: "getUpstream", tag: "Upstreams", summary: "Get an upstream", resp: apiUpstream{}}},
		{"PATCH", "/api/v1/upstreams/{id}", s.apiPatchUpstream, apiOperation{id: "updateUpstream", tag: "Upstreams", summary: "Change an upstream",
			doc: "Absent fields keep their values.", body: apiUpstreamInput{}, resp: apiUpstream{}}},
		{"DELETE", "/api/v1/upstreams/{id}", s.apiDeleteUpstream, apiOperation{id: "deleteUpstream", tag: "Upstreams", summary: "Remove an upstream",
			doc: "Its tools are removed with it.", status: http.StatusNoContent}},

		{"GET", "/api/v1/tools", s.apiListTools, apiOperation{id: "listTools", tag: "Tools", summary: "List tools",
			doc:   "By name, a page at a time.",
			query: append([]apiParam{{name: "upstream_id", typ: "string", format: "uuid", doc: "Only this upstream's tools."}}, page...),
			resp:  apiToolPage{}}},
		{"POST", "/api/v1/tools", s.apiCreateTool, apiOperation{id: "createTool", tag: "Tools", summary: "Define a tool",
			doc:  "upstream_id, name, method and path_template are required; enabled defaults to true.",
			body: apiToolInput{}, status: http.StatusCreated, resp: apiTool{}}},
		{"POST", "/api/v1/tools/import", s.apiImportTools, apiOperation{id: "importTools", tag: "Tools", summary: "Import tools from an OpenAPI document",
			doc: "One tool per operation of an OpenAPI 3.0 or 3.1 document, given by url or inline as document. With " +
				"dry_run the tools are previewed and nothing is stored; otherwise all of them (or those named in " +
				"select) are created in one transaction, or none is.",
			body: apiImportRequest{}, status: http.StatusCreated, resp: apiImportResult{},
			alt: &apiAltResponse{status: http.StatusOK, doc: "The preview (dry_run).", resp: apiImportPreview{}}}},
		{"GET", "/api/v1/tools/{id}", s.apiGetTool, apiOperation{id: "getTool", tag: "Tools", summary: "Get a tool", resp: apiTool{}}},
		{"PATCH", "/api/v1/tools/{id}", s.apiPatchTool, apiOperation{id: "updateTool", tag: "Tools", summary: "Change a tool",
			doc:  "Absent fields keep their values; approvals_required null returns to the tenant default.",
			body: apiToolInput{}, resp: apiTool{}}},
		{"DELETE", "/api/v1/tools/{id}", s.apiDeleteTool, apiOperation{id: "deleteTool", tag: "Tools", summary: "Remove a tool", status: http.StatusNoContent}},

		{"GET", "/api/v1/audit", s.apiListAudit, apiOperation{id: "listAuditEvents", tag: "Audit", summary: "Search the audit trail",
			doc: "Calls agents made, newest first, a page at a time: who (user), through which agent, which tool on which " +
				"upstream, the scopes used, the policy's decision and the outcome. Filters combine; the cursor continues " +
				"the same search.",
			query: append(append([]apiParam{}, apiAuditQuery...),
				apiParam{name: "limit", typ: "integer", doc: fmt.Sprintf("Page size, 1 to %d (default %d).", apiMaxLimit, apiDefaultLimit)},
				apiParam{name: "cursor", typ: "string", doc: "The next_cursor of the previous page; omit for the first page."}),
			resp: apiAuditPage{}}},
		{"GET", "/api/v1/approvals", s.apiListApprovals, apiOperation{id: "listApprovals", tag: "Approvals", summary: "List approval requests",
			doc: "Calls held for two-person approval, newest first, a page at a time, with their arguments and how many " +
				"approvals they have and need.",
			query: append([]apiParam{{name: "status", typ: "string", doc: "pending, approved, used, rejected or expired; omit for all."}}, page...),
			resp:  apiApprovalPage{}}},
	}
}

// api wraps an admin API handler: it authenticates the API key and lets
// viewer keys only read. Responses are never cached.
func (s *Server) api(h apiHandler) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		p, err := s.apiAuthenticate(w, r)
		if err != nil {
			return err
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !p.Role.Can(tenants.RoleAdmin) {
			return &statusError{status: http.StatusForbidden, msg: "this API key is read-only (viewer); use an admin key to make changes"}
		}
		return h(w, r, p)
	}
}

// apiAuthenticate resolves the request's API key. Only the Authorization
// header is read (never cookies or the query string). A missing, malformed,
// unknown or revoked key is a 401 with a Bearer challenge that doesn't say
// which.
func (s *Server) apiAuthenticate(w http.ResponseWriter, r *http.Request) (tenants.APIPrincipal, error) {
	unauthorized := func(errCode, msg string) (tenants.APIPrincipal, error) {
		challenge := apiChallenge
		if errCode != "" {
			challenge += `, error="` + errCode + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		return tenants.APIPrincipal{}, &statusError{status: http.StatusUnauthorized, msg: msg}
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return unauthorized("", "send an API key: Authorization: Bearer lsk_…")
	}
	scheme, key, ok := strings.Cut(vals[0], " ")
	if len(vals) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") {
		return unauthorized("invalid_request", "send the API key as Authorization: Bearer lsk_…")
	}
	key = strings.TrimSpace(key)
	if !strings.HasPrefix(key, tenants.APIKeyPrefix) || strings.ContainsAny(key, " \t") {
		return unauthorized("invalid_token", "the API key is invalid or revoked")
	}
	p, err := s.cfg.Tenants.AuthenticateAPIKey(r.Context(), key)
	if errors.Is(err, tenants.ErrNotFound) {
		return unauthorized("invalid_token", "the API key is invalid or revoked")
	}
	if err != nil {
		return tenants.APIPrincipal{}, fmt.Errorf("web: authenticate api key: %w", err)
	}
	return p, nil
}

// apiNoRoute answers requests under /api/ that match no route: 405 with
// Allow when other methods exist for the path, else 404.
func (s *Server) apiNoRoute(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	var allow []string
	for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != m+" /api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &statusError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("%s is not allowed here; use %s", r.Method, strings.Join(allow, ", "))}
	}
	return &statusError{status: http.StatusNotFound, msg: "no API route " + r.Method + " " + r.URL.Path + "; see /api/v1/openapi.json"}
}

// apiWriteJSON encodes v with status.
func apiWriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// apiBadRequest is a 400 naming the field at fault.
func apiBadRequest(field, msg string) error { return tenants.Invalid(field, msg) }

// apiDecode decodes the request body into v strictly: JSON only (by
// Content-Type, when one is sent), one object, no unknown fields, no
// trailing data. Errors name the field; a body over the server's limit is
// a 413.
func apiDecode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &statusError{status: http.StatusUnsupportedMediaType, msg: "send the body as application/json"}
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return err
			}
			return apiBadRequest("", "the body must be a single JSON object, with nothing after it")
		}
		return nil
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return apiBadRequest("", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiBadRequest("", "the body is not valid JSON: it ends too early")
	case errors.As(err, &se):
		return apiBadRequest("", fmt.Sprintf("the body is not valid JSON (at byte %d: %s)", se.Offset, se.Error()))
	case errors.As(err, &te):
		if te.Field == "" {
			return apiBadRequest("", "the body must be a JSON object")
		}
		return apiBadRequest(te.Field, fmt.Sprintf("%s must be %s, not %s", te.Field, apiJSONKind(te.Type), te.Value))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, err := strconv.Unquote(name); err == nil {
			name = n
		}
		if !utf8.ValidString(name) || len(name) > 100 {
			name = "?"
		}
		return apiBadRequest(name, fmt.Sprintf("unknown field %q", name))
	}
	return &tenants.Error{Kind: tenants.ErrInvalid, Message: "the body could not be read as JSON", Err: err}
}

// apiJSONKind names the JSON type a Go type decodes from.
func apiJSONKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[interface{ optionalElem() reflect.Type }]()) {
		return apiJSONKind(reflect.New(t).Interface().(interface{ optionalElem() reflect.Type }).optionalElem())
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// apiOptional is a JSON field that distinguishes absent (Set false), null
// (Set true, Null true) and a value.
type apiOptional[T any] struct {
	Set  bool
	Null bool
	V    T
}

// UnmarshalJSON records that the field was present.
func (o *apiOptional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

func (o *apiOptional[T]) optionalElem() reflect.Type { return reflect.TypeFor[T]() }

// apiPathID parses the {id} path value; a malformed id is a 404 like any
// other id the tenant doesn't have.
func apiPathID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, tenants.ErrNotFound
	}
	return id, nil
}

// apiParseID parses an id given in a body or query field.
func apiParseID(field, raw string) (uuid.UUID, error) {
	id, err := uuid.Parse(strings.TrimSpace(raw))
	if err != nil || id == uuid.Nil {
		return uuid.Nil, apiBadRequest(field, field+" must be an id (a UUID)")
	}
	return id, nil
}

// apiPageParams reads ?limit= and ?cursor=. The cursor is the opaque
// (base64url) sort key of the last item of the previous page.
func apiPageParams(r *http.Request) (limit int, after string, err error) {
	q := r.URL.Query()
	limit = apiDefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > apiMaxLimit {
			return 0, "", apiBadRequest("limit", fmt.Sprintf("limit must be an integer from 1 to %d", apiMaxLimit))
		}
		limit = n
	}
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 || len(b) > 200 || !utf8.Valid(b) {
			return 0, "", apiBadRequest("cursor", "cursor is not one this API returned; start again without it")
		}
		after = string(b)
	}
	return limit, after, nil
}

// apiNextCursor is the cursor after key when the page was full.
func apiNextCursor(full bool, key string) string {
	if !full {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// apiNonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func apiNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// apiSet overlays *dst with v when v is present.
func apiSet[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// apiSetSlice overlays *dst with v when v was present (a JSON [] is present
// and empty; absent and null are nil).
func apiSetSlice[T any](dst *[]T, v []T) {
	if v != nil {
		*dst = v
	}
}
